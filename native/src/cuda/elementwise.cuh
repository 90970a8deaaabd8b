// Launchers of the elementwise kernels (elementwise.cu): SwiGLU, embedding lookup, residual add.
// Launcher conventions: cuda_common.cuh. Host-only declarations (the tests include this header as plain C++).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dpo::cuda {

// out (M,F) = silu(gate) * up.
void launch_swiglu_forward(cudaStream_t stream, float* out, const float* gate, const float* up, int M, int F);
// dgate, dup (M,F) += ... (either may be null).
void launch_swiglu_backward(cudaStream_t stream, float* dgate, float* dup, const float* dout, const float* gate,
                            const float* up, int M, int F);
// out (M,C) = table[ids[m]] (V,C). A negative id gives a zero row (the CPU op throws BadInput; ids live on the
// device here, so the caller checks them on the host before upload).
void launch_embedding_forward(cudaStream_t stream, float* out, const int* ids, const float* table, int M, int C);
// out (n) = a + b (out may alias a or b).
void launch_add_forward(cudaStream_t stream, float* out, const float* a, const float* b, int64_t n);

}  // namespace dpo::cuda
