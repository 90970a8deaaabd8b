// Launchers of the NF4 matrix kernels (matmul_nf4.cu), as cpu::matmul_nf4_forward / matmul_nf4_backward_input, and
// the device copy of an NF4 weight they read. Launcher conventions: cuda_common.cuh; every launcher checks its
// launch and throws EngineError.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "quant/nf4.h"

namespace dpo::cuda {

// An Nf4Matrix resident on the device: the packed nibbles (ceil(rows*cols/2) bytes, layout of quant/nf4.h) and the
// dequantized fp32 first-level absmax (blocks of 64 flat elements, which may cross rows).
struct Nf4Device {
  const uint8_t* packed = nullptr;
  const float* absmax = nullptr;
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K
  Nf4StorageDType dtype = Nf4StorageDType::F16;
};

// out (M,N) = bf16(x) (M,K) . bf16(storage(dequant W))^T (N,K) + bias (N, may be null), fp32 accumulation.
void launch_matmul_nf4_forward(cudaStream_t stream, float* out, const float* x, const Nf4Device& w, const float* bias,
                               int M);
// dx (M,K) += bf16(dout) (M,N) . bf16(storage(dequant W)) (N,K).
void launch_matmul_nf4_backward_input(cudaStream_t stream, float* dx, const float* dout, const Nf4Device& w, int M);

}  // namespace dpo::cuda
