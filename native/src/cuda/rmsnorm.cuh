// Launchers of the RMSNorm kernels (rmsnorm.cu), as cpu::rmsnorm_forward / rmsnorm_backward.
// Launcher conventions: cuda_common.cuh. Host-only declarations (the tests include this header as plain C++).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dpo::cuda {

// out (M,C) = x / sqrt(mean(x^2) + eps) * w (C); rstd (M) saved when non-null. out may alias x.
void launch_rmsnorm_forward(cudaStream_t stream, float* out, float* rstd, const float* x, const float* w, int M, int C,
                            float eps);
// dx (M,C) += ..., dw (C) += ... (dw may be null); dw sums over m in a fixed order.
void launch_rmsnorm_backward(cudaStream_t stream, float* dx, float* dw, const float* dout, const float* x,
                             const float* w, const float* rstd, int M, int C);

}  // namespace dpo::cuda
