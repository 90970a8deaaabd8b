// Launchers of the transfer kernels (transfer.cu), as cpu/transfer.cpp.
// Launcher conventions: cuda_common.cuh. Host-only declarations (the tests include this header as plain C++).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dpo::cuda {

// The small steps between the big ops (Backend::scatter_rows .. embedding_backward). Products and
// sums are written with __fmul_rn / __fadd_rn, which nvcc never contracts into an FMA, so every output equals the
// CPU's fp32 arithmetic bit for bit.
// dst row rows[r] = src row r (M rows of `width` floats): KV-cache writes. A negative rows[r] writes nothing.
void launch_scatter_rows(cudaStream_t stream, float* dst, const int* rows, const float* src, int M, int width);
// dst row r = src row rows[r] (r < M). A negative rows[r] gives a zero row.
void launch_gather_rows(cudaStream_t stream, float* dst, const float* src, const int* rows, int M, int width);
// y (n) += a * x, the product rounded before the add (no FMA).
void launch_axpy(cudaStream_t stream, float* y, const float* x, float a, int64_t n);
// out (n) = a * x (out may alias x).
void launch_scale(cudaStream_t stream, float* out, const float* x, float a, int64_t n);
// out (n) = kept[i] ? x * keep_scale : 0 (inverted dropout; the mask kept (n) is made on the host).
void launch_dropout_forward(cudaStream_t stream, float* out, const float* x, const uint8_t* kept, float keep_scale,
                            int64_t n);
// dx (n) += kept[i] ? dout * keep_scale : 0.
void launch_dropout_backward(cudaStream_t stream, float* dx, const float* dout, const uint8_t* kept, float keep_scale,
                             int64_t n);
// dtable (V,C) row ids[m] += dout (M,C) row m, each element's rows added in order m = 0..M-1 (no atomics).
// A negative ids[m] is skipped (the caller validates ids on the host).
void launch_embedding_backward(cudaStream_t stream, float* dtable, const float* dout, const int* ids, int M, int C);

}  // namespace dpo::cuda
