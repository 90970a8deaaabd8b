// The fixed tiny Llama the weight-loading fuzz targets load checkpoints for, and checkpoint images of it (plain
// F32 / BF16, or with bitsandbytes pre-quantized linears) that seed those targets.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dpo/model_config.h"
#include "io/safetensors.h"

namespace dpo::fuzz {

// config.json text of the tiny model: C=8, L=1, NH=2, NKV=1, HD=4, F=12, V=16, untied lm_head.
const std::string& tiny_config_json();
const ModelConfig& tiny_config();

// Owned tensors for an image; `bytes` is what the file holds.
struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Every tensor of the tiny model in `dtype` (F32 or BF16), deterministic values. With `prequantized`, each linear
// weight is stored the way bitsandbytes saves a *-bnb-4bit checkpoint (docs/fuzzing.md; spec of the layout in
// model/weights.cpp): packed nibbles, uint8 absmax, nested_absmax, quant maps and the quant_state JSON.
std::vector<OwnedTensor> tiny_tensors(DType dtype, bool prequantized);

// The quant_state JSON bitsandbytes writes for a (rows, cols) weight with the given nested offset.
std::string quant_state_json(int64_t rows, int64_t cols, float nested_offset);

// The checkpoint image of `tensors` (safetensors bytes).
std::vector<uint8_t> image_of(const std::vector<OwnedTensor>& tensors);

// The name of the q_proj quant_state tensor the quant_state target replaces.
extern const char* const kQuantStateTensor;

}  // namespace dpo::fuzz
