// Vocabulary-side GPU ops, as cpu::logsoftmax_gather_forward / logsoftmax_gather_backward / argmax_rows.
//
// Parallel decomposition: one block of 512 threads (16 warps) per row m for all three; thread i handles vocabulary
// entries v = i, i+512, ... in increasing order (coalesced), then a fixed-order warp butterfly and an in-order
// combination of the 16 warp results. The order depends only on V, never on M, so every row is batch-invariant
// and bit-reproducible.
//
// Forward: the logits are read ONCE (a 62k-float row is 242 KiB; a chunk of rows does not stay in L2 between two
// passes), with an online (max, sum-exp) per thread: on a new max the running sum is rescaled by exp(old - new).
// The (max, sum) pairs combine as m = max(m1, m2), s = s1 exp(m1 - m) + s2 exp(m2 - m) (symmetric, so the
// butterfly leaves the same bits in every lane). lse = m + log(s). Mathematically the CPU's two-pass value; the
// rescalings round differently, so lse differs from the CPU's by a few fp32 ulps.
// Backward: dlogits (overwritten) = -g exp(x - lse), plus g at the target, elementwise in the same block layout;
// each product and the add are rounded separately (as the CPU's two statements).
// Argmax: per thread the first maximum of its entries (strict >), combined by (larger value, then smaller index);
// NaN entries are ignored, and a NaN at v = 0 gives 0, as the CPU's `x[v] > x[best]` scan does.
#include <climits>
#include <cmath>

#include "cuda/logits.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/kernel_helpers.cuh"

namespace dpo::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

struct MaxSum {
  float m, s;  // running max, sum of exp(x - m); (-inf, 0) when empty
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  const float sa = a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m);
  const float sb = b.m == -INFINITY ? 0.0f : b.s * expf(b.m - m);
  return {m, sa + sb};
}

struct ArgBest {
  float v;  // NaN mapped to -inf
  int i;    // INT_MAX when empty
};

// b better than a: larger value, or equal value and smaller index (a total order, so the butterfly is symmetric).
__device__ __forceinline__ ArgBest pick(ArgBest a, ArgBest b) {
  return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

// ---- kernels ----

__global__ void __launch_bounds__(kThreads)
logsoftmax_gather_forward_kernel(float* logp /*(M)*/, float* lse /*(M) or null*/, const float* logits /*(M,V)*/,
                                 const int* target /*(M)*/, int V) {
  __shared__ MaxSum red[kWarps];
  const int64_t m = blockIdx.x;
  const float* x = logits + m * V;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  MaxSum a{-INFINITY, 0.0f};
  int nan = 0;  // a NaN entry makes the CPU's sum (and lse) NaN; the (-inf, s) rescalings below could drop it
  for (int v = tid; v < V; v += kThreads) {
    const float xv = x[v];
    nan |= xv != xv;
    if (xv > a.m) {  // new max: rescale what was summed so far
      a.s = (a.m == -INFINITY ? 0.0f : a.s * expf(a.m - xv)) + 1.0f;
      a.m = xv;
    } else if (xv != -INFINITY) {  // (-inf adds exp(-inf) = 0; skipping it keeps an empty (-inf, 0) clean)
      a.s += expf(xv - a.m);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const MaxSum b{__shfl_xor_sync(helpers::kFullMask, a.m, o), __shfl_xor_sync(helpers::kFullMask, a.s, o)};
    a = combine(a, b);
  }
  if (lane == 0) red[warp] = a;
  nan = __syncthreads_or(nan);
  if (tid != 0) return;
  MaxSum t = red[0];
  for (int w = 1; w < kWarps; w++) t = combine(t, red[w]);
  // As cpu row_lse: -inf when no entry exceeds -inf (NaN never does), else NaN when any entry is NaN.
  const float l = t.m == -INFINITY ? -INFINITY : nan ? NAN : t.m + logf(t.s);
  if (lse) lse[m] = l;
  const int tg = target[m];
  logp[m] = tg < 0 ? 0.0f : tg >= V ? NAN : x[tg] - l;
}

__global__ void __launch_bounds__(kThreads)
logsoftmax_gather_backward_kernel(float* dlogits /*(M,V)*/, const float* dlogp /*(M)*/, const float* logits /*(M,V)*/,
                                  const float* lse /*(M)*/, const int* target /*(M)*/, int V) {
  const int64_t m = blockIdx.x;
  float* d = dlogits + m * V;
  const int tg = target[m];
  if (tg < 0 || tg >= V) {  // ignored row: 0; a target outside the vocabulary (a caller bug): NaN
    const float fill = tg < 0 ? 0.0f : NAN;
    for (int v = threadIdx.x; v < V; v += kThreads) d[v] = fill;
    return;
  }
  const float* x = logits + m * V;
  const float g = dlogp[m], l = lse[m];
  for (int v = threadIdx.x; v < V; v += kThreads) {
    const float val = __fmul_rn(-g, expf(x[v] - l));
    d[v] = v == tg ? __fadd_rn(val, g) : val;
  }
}

__global__ void __launch_bounds__(kThreads)
argmax_rows_kernel(int* out /*(M)*/, const float* x /*(M,V)*/, int V) {
  __shared__ ArgBest red[kWarps];
  const int64_t m = blockIdx.x;
  const float* r = x + m * V;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  ArgBest a{-INFINITY, INT_MAX};
  for (int v = tid; v < V; v += kThreads) {
    const float xv = r[v];
    const ArgBest c{xv != xv ? -INFINITY : xv, v};  // NaN: never wins
    a = pick(a, c);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const ArgBest b{__shfl_xor_sync(helpers::kFullMask, a.v, o), __shfl_xor_sync(helpers::kFullMask, a.i, o)};
    a = pick(a, b);
  }
  if (lane == 0) red[warp] = a;
  __syncthreads();
  if (tid != 0) return;
  ArgBest t = red[0];
  for (int w = 1; w < kWarps; w++) t = pick(t, red[w]);
  out[m] = r[0] != r[0] ? 0 : t.i;  // the CPU scan never leaves a NaN at index 0
}

}  // namespace

// ---- launchers (entries) ----

void launch_logsoftmax_gather_forward(cudaStream_t stream, float* logp, float* lse, const float* logits,
                                      const int* target, int M, int V) {
  if (M < 0 || V <= 0) throw EngineError(ErrorCode::BadInput, "logsoftmax_gather: bad shape");
  if (M == 0) return;
  logsoftmax_gather_forward_kernel<<<unsigned(M), kThreads, 0, stream>>>(logp, lse, logits, target, V);
  check_last_launch("logsoftmax_gather_forward");
}

void launch_logsoftmax_gather_backward(cudaStream_t stream, float* dlogits, const float* dlogp, const float* logits,
                                       const float* lse, const int* target, int M, int V) {
  if (M < 0 || V <= 0) throw EngineError(ErrorCode::BadInput, "logsoftmax_gather_backward: bad shape");
  if (M == 0) return;
  logsoftmax_gather_backward_kernel<<<unsigned(M), kThreads, 0, stream>>>(dlogits, dlogp, logits, lse, target, V);
  check_last_launch("logsoftmax_gather_backward");
}

void launch_argmax_rows(cudaStream_t stream, int* out, const float* x, int M, int V) {
  if (M < 0 || V <= 0) throw EngineError(ErrorCode::BadInput, "argmax_rows: bad shape");
  if (M == 0) return;
  argmax_rows_kernel<<<unsigned(M), kThreads, 0, stream>>>(out, x, V);
  check_last_launch("argmax_rows");
}

}  // namespace dpo::cuda
