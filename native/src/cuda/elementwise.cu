// Elementwise GPU ops, as cpu::swiglu_forward / swiglu_backward / embedding_forward / add_forward.
//
// Parallel decomposition: swiglu and add are grid-stride loops over the flat index (256 threads per block, at most
// 65536 blocks, 64-bit indices); each element is computed alone, so the result never depends on the launch shape.
// embedding: one block of 256 threads per row m, threads over the C columns (coalesced copy of one table row).
//
// Arithmetic: silu(g) = g / (1 + expf(-g)) in fp32 as on the CPU; CUDA's expf is within 2 ulp (glibc's within 1), so
// results can differ from the CPU's in the last bit or two.
#include "cuda/elementwise.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/kernel_helpers.cuh"

namespace dpo::cuda {
namespace {

constexpr int kThreads = 256;

// ---- kernels ----

__global__ void __launch_bounds__(kThreads)
swiglu_forward_kernel(float* out /*(n)*/, const float* gate /*(n)*/, const float* up /*(n)*/, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// dgate += dout * up * sig * (1 + g * (1 - sig)),  dup += dout * silu(g), sig = 1 / (1 + exp(-g)).
__global__ void __launch_bounds__(kThreads)
swiglu_backward_kernel(float* dgate /*(n) or null*/, float* dup /*(n) or null*/, const float* dout /*(n)*/,
                       const float* gate /*(n)*/, const float* up /*(n)*/, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const float g = gate[i];
    const float sig = 1.0f / (1.0f + expf(-g));
    if (dgate) dgate[i] += dout[i] * up[i] * (sig * (1.0f + g * (1.0f - sig)));
    if (dup) dup[i] += dout[i] * (g * sig);
  }
}

__global__ void __launch_bounds__(kThreads)
embedding_forward_kernel(float* out /*(M,C)*/, const int* ids /*(M)*/, const float* table /*(V,C)*/, int C) {
  const int64_t m = blockIdx.x;
  const int id = ids[m];
  float* o = out + m * C;
  if (id < 0) {  // a caller bug (the CPU op throws): a defined zero row rather than an out-of-bounds read
    for (int c = threadIdx.x; c < C; c += kThreads) o[c] = 0.0f;
    return;
  }
  const float* row = table + int64_t(id) * C;
  for (int c = threadIdx.x; c < C; c += kThreads) o[c] = row[c];
}

__global__ void __launch_bounds__(kThreads)
add_forward_kernel(float* out /*(n)*/, const float* a /*(n)*/, const float* b /*(n)*/, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    out[i] = a[i] + b[i];
}

}  // namespace

// ---- launchers (entries) ----

void launch_swiglu_forward(cudaStream_t stream, float* out, const float* gate, const float* up, int M, int F) {
  if (M < 0 || F < 0) throw EngineError(ErrorCode::BadInput, "swiglu: bad shape");
  const int64_t n = int64_t(M) * F;
  if (n == 0) return;
  swiglu_forward_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(out, gate, up, n);
  check_last_launch("swiglu_forward");
}

void launch_swiglu_backward(cudaStream_t stream, float* dgate, float* dup, const float* dout, const float* gate,
                            const float* up, int M, int F) {
  if (M < 0 || F < 0) throw EngineError(ErrorCode::BadInput, "swiglu_backward: bad shape");
  const int64_t n = int64_t(M) * F;
  if (n == 0 || (!dgate && !dup)) return;
  swiglu_backward_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(dgate, dup, dout, gate, up, n);
  check_last_launch("swiglu_backward");
}

void launch_embedding_forward(cudaStream_t stream, float* out, const int* ids, const float* table, int M, int C) {
  if (M < 0 || C < 0) throw EngineError(ErrorCode::BadInput, "embedding: bad shape");
  if (M == 0 || C == 0) return;
  embedding_forward_kernel<<<unsigned(M), kThreads, 0, stream>>>(out, ids, table, C);
  check_last_launch("embedding_forward");
}

void launch_add_forward(cudaStream_t stream, float* out, const float* a, const float* b, int64_t n) {
  if (n < 0) throw EngineError(ErrorCode::BadInput, "add: bad size");
  if (n == 0) return;
  add_forward_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(out, a, b, n);
  check_last_launch("add_forward");
}

}  // namespace dpo::cuda
