// Asks the CUDA runtime whether a usable device exists (compiled only when nvcc is present).
#pragma once
#include <cstdint>
#include <string>

namespace dpo::cuda {

struct ProbeResult {
  bool available = false;
  std::string reason;   // why not, with the runtime's error code and text
  std::string device;   // device 0 name
  uint64_t free_bytes = 0, total_bytes = 0;
};

ProbeResult probe();

}  // namespace dpo::cuda
