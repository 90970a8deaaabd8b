// Which backend a model load computes on (defined in engine.cpp, beside Model::load): the CPU, or a GPU that
// answered and passed its self-check (model/backend_self_check.h). Exposed so that the tests can offer a stand-in GPU.
#pragma once
#include <memory>
#include <string>

#include "dpo/engine.h"
#include "model/backend_self_check.h"

namespace dpo {

// What the machine offers: a GPU that answered (with its once-per-process self-check), or why there is none.
struct GpuOffer {
  bool available = false;
  std::string reason;         // why not, when unavailable
  CheckedGpu* gpu = nullptr;  // when available
  uint64_t free_bytes = 0, total_bytes = 0;
};

// The CUDA device 0, or under DPO_TEST_GPU (tests only) a CPU backend standing in for a GPU
// (cpu/fault_injecting_backend.h).
GpuOffer gpu_offer();

// --backend cpu: the CPU. cuda: the GPU, or E_NO_CUDA (E_DEVICE_FAULT when the self-check faulted it) naming why.
// auto: the GPU when it answers and passes its self-check, else the CPU. `note` says which and why.
std::unique_ptr<Backend> choose_backend(BackendChoice choice, const GpuOffer& offer, std::string& note);

}  // namespace dpo
