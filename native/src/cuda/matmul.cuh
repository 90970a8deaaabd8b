// Launchers of the fp32 matrix kernels (matmul.cu), as cpu::matmul_forward / matmul_backward. Launcher conventions:
// cuda_common.cuh; every launcher checks its launch and throws EngineError.
#pragma once
#include <cuda_runtime.h>

namespace dpo::cuda {

// out (M,N) = x (M,K) . w (N,K)^T + bias (N, may be null). fp32 FMA, each element one chain over k = 0..K-1.
void launch_matmul_forward(cudaStream_t stream, float* out, const float* x, const float* w, const float* bias, int M,
                           int K, int N);
// dx (M,K) += dout (M,N) . w (N,K); dw (N,K) += dout^T . x; dbias (N) += sum_m dout. dx, dw, dbias may be null.
void launch_matmul_backward(cudaStream_t stream, float* dx, float* dw, float* dbias, const float* dout, const float* x,
                            const float* w, int M, int K, int N);

}  // namespace dpo::cuda
