// The small GPU steps between the big ops, so activations never leave the device: row scatter / gather (KV-cache
// writes, last-position picks), axpy, scale, dropout and its backward, embedding backward.
// Semantics are Backend's (dpo/backend.h); the CPU backend is the reference.
//
// Exactness: every fp32 product and sum is written with __fmul_rn / __fadd_rn. nvcc contracts a*x + y into one FMA
// by default (one rounding instead of two), which would differ from the CPU's separately rounded ops in the last bit;
// the _rn intrinsics are never contracted, so each output is the CPU's value bit for bit. Elementwise ops are
// grid-stride loops (256 threads, at most 65536 blocks, 64-bit indices): each element is computed alone, so the
// result never depends on the launch shape.
//
// The one reduction, without float atomics:
//  embedding_backward: thread = one table column c, block row y = one partition of the ids (id % parts == y). Each
//    thread walks m = 0..M-1 in order and adds dout[m][c] into dtable[ids[m]][c] for the ids of its partition, so
//    every table element is owned by one thread and receives its rows in ascending m: the CPU's loop, bit for bit,
//    whatever `parts` is. The partitions only shorten each thread's serial chain (rows of other ids are skipped).
#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/transfer.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/kernel_helpers.cuh"

namespace dpo::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kIdChunk = 1024;  // ids staged in shared memory per step of embedding_backward

// ---- kernels ----

// dst row rows[r] = src row r: block per row (grid-stride over rows), threads over the columns (coalesced).
__global__ void __launch_bounds__(kThreads)
scatter_rows_kernel(float* dst /*(?,width)*/, const int* rows /*(M)*/, const float* src /*(M,width)*/, int M,
                    int width) {
  for (int64_t r = blockIdx.x; r < M; r += gridDim.x) {
    const int to = rows[r];
    if (to < 0) continue;  // block-uniform: a caller bug gets no write rather than an out-of-bounds one
    float* d = dst + int64_t(to) * width;
    const float* s = src + r * width;
    for (int c = threadIdx.x; c < width; c += kThreads) d[c] = s[c];
  }
}

// dst row r = src row rows[r].
__global__ void __launch_bounds__(kThreads)
gather_rows_kernel(float* dst /*(M,width)*/, const float* src /*(?,width)*/, const int* rows /*(M)*/, int M,
                   int width) {
  for (int64_t r = blockIdx.x; r < M; r += gridDim.x) {
    const int from = rows[r];
    float* d = dst + r * width;
    if (from < 0) {  // a caller bug: a defined zero row
      for (int c = threadIdx.x; c < width; c += kThreads) d[c] = 0.0f;
      continue;
    }
    const float* s = src + int64_t(from) * width;
    for (int c = threadIdx.x; c < width; c += kThreads) d[c] = s[c];
  }
}

__global__ void __launch_bounds__(kThreads)
axpy_kernel(float* y /*(n)*/, const float* x /*(n)*/, float a, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}

__global__ void __launch_bounds__(kThreads)
scale_kernel(float* out /*(n)*/, const float* x /*(n)*/, float a, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    out[i] = __fmul_rn(a, x[i]);
}

__global__ void __launch_bounds__(kThreads)
dropout_forward_kernel(float* out /*(n)*/, const float* x /*(n)*/, const uint8_t* kept /*(n)*/, float keep_scale,
                       int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    out[i] = kept[i] ? __fmul_rn(x[i], keep_scale) : 0.0f;
}

// dx += dout * keep_scale where kept; a dropped element is left untouched (a -0 gradient stays -0), as on the CPU.
__global__ void __launch_bounds__(kThreads)
dropout_backward_kernel(float* dx /*(n)*/, const float* dout /*(n)*/, const uint8_t* kept /*(n)*/, float keep_scale,
                        int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    if (kept[i]) dx[i] = __fadd_rn(dx[i], __fmul_rn(dout[i], keep_scale));  // dropped: untouched, as the CPU
}

__global__ void __launch_bounds__(kThreads)
embedding_backward_kernel(float* dtable /*(V,C)*/, const float* dout /*(M,C)*/, const int* ids /*(M)*/, int M, int C,
                          int parts) {
  __shared__ int sid[kIdChunk];
  const int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const int part = int(blockIdx.y);
  for (int m0 = 0; m0 < M; m0 += kIdChunk) {  // every thread runs every step: the barriers stay matched
    const int n = min(kIdChunk, M - m0);
    __syncthreads();  // the previous chunk has been read
    for (int i = threadIdx.x; i < n; i += kThreads) sid[i] = ids[m0 + i];
    __syncthreads();
    if (c >= C) continue;
    for (int i = 0; i < n; i++) {  // m ascending
      const int id = sid[i];
      if (id < 0 || id % parts != part) continue;  // block-uniform
      float* t = dtable + int64_t(id) * C + c;
      *t = __fadd_rn(*t, dout[int64_t(m0 + i) * C + c]);
    }
  }
}

// ---- launchers ----

unsigned row_grid(int M) { return unsigned(std::min(M, 65535)); }

void check_rows(const char* op, int M, int width) {
  if (M < 0 || width < 0) throw EngineError(ErrorCode::BadInput, std::string(op) + ": bad shape");
}

void check_size(const char* op, int64_t n) {
  if (n < 0) throw EngineError(ErrorCode::BadInput, std::string(op) + ": bad size");
}

}  // namespace

// ---- entries ----

void launch_scatter_rows(cudaStream_t stream, float* dst, const int* rows, const float* src, int M, int width) {
  check_rows("scatter_rows", M, width);
  if (M == 0 || width == 0) return;
  scatter_rows_kernel<<<row_grid(M), kThreads, 0, stream>>>(dst, rows, src, M, width);
  check_last_launch("scatter_rows");
}

void launch_gather_rows(cudaStream_t stream, float* dst, const float* src, const int* rows, int M, int width) {
  check_rows("gather_rows", M, width);
  if (M == 0 || width == 0) return;
  gather_rows_kernel<<<row_grid(M), kThreads, 0, stream>>>(dst, src, rows, M, width);
  check_last_launch("gather_rows");
}

void launch_axpy(cudaStream_t stream, float* y, const float* x, float a, int64_t n) {
  check_size("axpy", n);
  if (n == 0) return;
  axpy_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(y, x, a, n);
  check_last_launch("axpy");
}

void launch_scale(cudaStream_t stream, float* out, const float* x, float a, int64_t n) {
  check_size("scale", n);
  if (n == 0) return;
  scale_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(out, x, a, n);
  check_last_launch("scale");
}

void launch_dropout_forward(cudaStream_t stream, float* out, const float* x, const uint8_t* kept, float keep_scale,
                            int64_t n) {
  check_size("dropout", n);
  if (n == 0) return;
  dropout_forward_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(out, x, kept, keep_scale, n);
  check_last_launch("dropout");
}

void launch_dropout_backward(cudaStream_t stream, float* dx, const float* dout, const uint8_t* kept, float keep_scale,
                             int64_t n) {
  check_size("dropout_backward", n);
  if (n == 0) return;
  dropout_backward_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(dx, dout, kept, keep_scale, n);
  check_last_launch("dropout_backward");
}

void launch_embedding_backward(cudaStream_t stream, float* dtable, const float* dout, const int* ids, int M, int C) {
  check_rows("embedding_backward", M, C);
  if (M == 0 || C == 0) return;
  // About 64 rows per partition, at most 64 partitions: enough blocks to fill the GPU when C is a few thousand,
  // while each block still scans all M ids (cheap shared-memory broadcasts). The result does not depend on it.
  const int parts = std::max(1, std::min(64, M / 64));
  const dim3 grid(unsigned((int64_t(C) + kThreads - 1) / kThreads), unsigned(parts));
  embedding_backward_kernel<<<grid, kThreads, 0, stream>>>(dtable, dout, ids, M, C, parts);
  check_last_launch("embedding_backward");
}

}  // namespace dpo::cuda
