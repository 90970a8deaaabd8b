// Writes a random bf16 checkpoint in Hugging Face layout (model.safetensors, or N shards plus
// model.safetensors.index.json) fast enough for a 7B model: the data is generated in 16 MiB chunks on all cores with
// a counter-based RNG (splitmix64 of seed/tensor/chunk), so the bytes do not depend on the thread count, and written
// with pwrite.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dpo::tool {

// Every element is offset + scale * u with u uniform on [-sqrt(3), sqrt(3)] (zero mean, unit variance).
struct RandomTensor {
  std::string name;
  std::vector<int64_t> shape;
  float scale = 1.0f;
  float offset = 0.0f;
};

struct CheckpointStats {
  int64_t params = 0;
  uint64_t bytes = 0;   // tensor bytes (the index's total_size)
  int shards = 0;
  double seconds = 0;
};

// Tensors keep their order; shards split it into runs of about equal bytes (model-0000i-of-0000N.safetensors).
CheckpointStats write_random_checkpoint(const std::string& dir, const std::vector<RandomTensor>& tensors, int shards,
                                        uint64_t seed, int threads);

}  // namespace dpo::tool
