// CUDA device probe: cudaGetDeviceCount fails (error 35, insufficient driver) on machines without a GPU driver;
// that is reported, not thrown, and the engine computes on the CPU.
#include <cuda_runtime.h>

#include "cuda/cuda_probe.h"

namespace dpo::cuda {

ProbeResult probe() {
  ProbeResult r;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    r.reason = "cudaGetDeviceCount failed: error " + std::to_string(int(err)) + " (" + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return r;
  }
  if (count == 0) {
    r.reason = "no CUDA device found";
    return r;
  }
  cudaDeviceProp prop{};
  if ((err = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
    r.reason = std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorString(err);
    return r;
  }
  r.device = prop.name;
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(0) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    r.free_bytes = free_b;
    r.total_bytes = total_b;
  }
  r.available = true;
  return r;
}

}  // namespace dpo::cuda
