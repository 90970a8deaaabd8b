// The optimizer step on the GPU (docs/reference/trainer.md#gradient-clipping, docs/reference/optimizer.md): the
// per-tensor gradient norm of clip_grad_norm_, torch AdamW, and bitsandbytes 0.43.1's 32-bit and 8-bit blockwise AdamW
// kernels, so gradients, LoRA weights and optimizer state stay in device memory. Semantics are Backend's
// (dpo/backend.h); the CPU backend is the reference.
//
// Exactness: the per-element arithmetic is train/adam_math.h, the very functions the CPU reference runs, compiled
// here for the device, where core/fp_ops.h turns every operation into its _rn intrinsic (__fmul_rn, __fadd_rn,
// __fdiv_rn, __fsqrt_rn, and __fmaf_rn only where torch fuses its lerp). nvcc never contracts those, and the scalars
// (bias corrections, step size, ...) come from the host, computed once per tensor and step as the references do; so
// params and state equal the CPU backend's bit for bit. The 8-bit kernel's block maxima are order-independent (fmaxf
// of non-negative values; a NaN operand loses, as std::fmax), so its block reduction gives the CPU's bits as well.
//
// Reduction without float atomics, l2_norm: squares of floats are exact in double; thread (b, t) sums x[i] for
// i = b*256 + t + k*G*256 in double, a fixed xor butterfly per warp and the 8 warp sums in order give block b's partial
// (G blocks, G a function of n only), and one block adds the G partials in the same fixed way before sqrt and the
// rounding to fp32. The same bits every run on every GPU; ~1e-16 relative from the CPU's chunked serial sums.
#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <string>

#include "cuda/optimizer.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/kernel_helpers.cuh"
#include "train/adam_math.h"

namespace dpo::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = int(kAdam8bitBlockSize) / kThreads;  // 8 elements of a 2048 block per thread, as bnb
static_assert(kPerThread * kThreads == kAdam8bitBlockSize, "one CUDA block per 8-bit state block");
static_assert(kThreads == 256, "the 8-bit kernel stages one 256-entry map entry per thread");
constexpr int64_t kL2PerThread = 8;  // elements per thread before a launch adds blocks

// ---- kernels ----

__device__ __forceinline__ double warp_sum_double(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(helpers::kFullMask, v, o);
  return v;
}

// Fixed-order block sum of doubles (thread 0 gets the total): warp butterflies, then warps 0..7 in order.
__device__ __forceinline__ double block_sum_double(double v, double* red) {
  v = warp_sum_double(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = red[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; w++) t += red[w];
  return t;
}

// partial (gridDim.x) = per-block sums of x (n) squared, in double.
__global__ void __launch_bounds__(kThreads)
l2_partial_kernel(double* partial, const float* x /*(n)*/, int64_t n) {
  __shared__ double red[kThreads / 32];
  double s = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    const double d = double(x[i]);
    s += d * d;  // exact square: a contraction into a double fma gives the same bits
  }
  const double t = block_sum_double(s, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = t;
}

// out (1) = fp32(sqrt(sum of partial (count))), one block.
__global__ void __launch_bounds__(kThreads)
l2_finish_kernel(float* out, const double* partial, int count) {
  __shared__ double red[kThreads / 32];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += kThreads) s += partial[i];
  const double t = block_sum_double(s, red);
  if (threadIdx.x == 0) out[0] = float(sqrt(t));  // double sqrt is correctly rounded, as std::sqrt
}

__global__ void __launch_bounds__(kThreads)
adamw_kernel(float* param /*(n)*/, float* exp_avg /*(n)*/, float* exp_avg_sq /*(n)*/, const float* grad /*(n)*/,
             AdamWStepScalars s, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    float m = exp_avg[i], v = exp_avg_sq[i];
    param[i] = adam::adamw(param[i], grad[i], m, v, s);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

__global__ void __launch_bounds__(kThreads)
adamw_bnb32_kernel(float* param /*(n)*/, float* m32 /*(n)*/, float* v32 /*(n)*/, const float* grad /*(n)*/,
                   BnbAdamStepScalars s, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    float m = m32[i], v = v32[i];
    param[i] = adam::bnb32(param[i], grad[i], m, v, s);
    m32[i] = m;
    v32[i] = v;
  }
}

// kOptimizerStatic8bit2StateBlockwise<float, ADAM, 2048, 8>: CUDA block b owns state block b (2048 elements; thread t
// holds elements t + 256k, k < 8, coalesced). Pass 1 updates m, v from the codes and the OLD scales in registers and
// takes the block maxima; pass 2 steps the params and requantizes with the NEW scales (see adamw_8bit.cpp). Lanes past
// n in the last block are bnb's padded lanes (g = 0, codes 128 / 0): they join the maxima and write nothing.
__global__ void __launch_bounds__(kThreads)
adamw_bnb8bit_kernel(float* param /*(n)*/, uint8_t* state1 /*(n)*/, uint8_t* state2 /*(n)*/,
                     float* absmax1 /*(blocks)*/, float* absmax2 /*(blocks)*/, const float* grad /*(n)*/,
                     const float* qmaps /*(2,256)*/, BnbAdamStepScalars s, int64_t n) {
  __shared__ float q1[256], q2[256];  // the maps, read at data-dependent indices by the search
  __shared__ float red1[kThreads / 32], red2[kThreads / 32];
  q1[threadIdx.x] = qmaps[threadIdx.x];
  q2[threadIdx.x] = qmaps[256 + threadIdx.x];
  __syncthreads();

  const int64_t b = blockIdx.x, e0 = b * kAdam8bitBlockSize;
  const int64_t len = n - e0 < kAdam8bitBlockSize ? n - e0 : kAdam8bitBlockSize;
  const float a1 = absmax1[b], a2 = absmax2[b];  // read by every thread before thread 0 writes (barriers below)

  // Pass 1: new state and the block maxima.
  float g[kPerThread], m[kPerThread], v[kPerThread];
  float max1 = -FLT_MAX, max2 = -FLT_MAX;
#pragma unroll
  for (int k = 0; k < kPerThread; k++) {
    const int64_t j = threadIdx.x + k * kThreads;
    uint8_t c1 = 128, c2 = 0;
    g[k] = 0.0f;
    if (j < len) {
      g[k] = grad[e0 + j];
      c1 = state1[e0 + j];
      c2 = state2[e0 + j];
    }
    adam::bnb8_moments(g[k], q1[c1], a1, q2[c2], a2, s, m[k], v[k]);
    max1 = fp::max(max1, fp::abs(m[k]));
    max2 = fp::max(max2, fp::abs(v[k]));
  }
  max1 = helpers::warp_max(max1);
  max2 = helpers::warp_max(max2);
  if ((threadIdx.x & 31) == 0) red1[threadIdx.x >> 5] = max1, red2[threadIdx.x >> 5] = max2;
  __syncthreads();
  float new1 = red1[0], new2 = red2[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; w++) new1 = fp::max(new1, red1[w]), new2 = fp::max(new2, red2[w]);
  if (threadIdx.x == 0) absmax1[b] = new1, absmax2[b] = new2;

  // Pass 2: parameter step of the finite-gradient elements, then requantization with the new scales.
#pragma unroll
  for (int k = 0; k < kPerThread; k++) {
    const int64_t j = threadIdx.x + k * kThreads;
    if (j >= len) continue;
    if (fp::finite(g[k])) param[e0 + j] = adam::bnb8_param(param[e0 + j], m[k], v[k], s);
    state1[e0 + j] = adam::bnb8_code1(q1, m[k], new1);
    state2[e0 + j] = adam::bnb8_code2(q2, v[k], new2);
  }
}

// ---- launchers ----

void check_size(const char* op, int64_t n) {
  if (n < 0) throw EngineError(ErrorCode::BadInput, std::string(op) + ": bad size");
}

}  // namespace

// ---- entries ----

void launch_l2_norm(cudaStream_t stream, float* out, const float* x, int64_t n, double* partials) {
  check_size("l2_norm", n);
  // G depends on n only (never on the device), so the summation order, and the result, is fixed for a given n.
  const int64_t per_block = kThreads * kL2PerThread;
  const int64_t G = n == 0 ? 1 : std::min<int64_t>(kL2NormPartials, (n + per_block - 1) / per_block);
  l2_partial_kernel<<<unsigned(G), kThreads, 0, stream>>>(partials, x, n);
  check_last_launch("l2_norm");
  l2_finish_kernel<<<1, kThreads, 0, stream>>>(out, partials, int(G));
  check_last_launch("l2_norm");
}

void launch_adamw_step(cudaStream_t stream, float* param, float* exp_avg, float* exp_avg_sq, const float* grad,
                       const AdamWStepScalars& s, int64_t n) {
  check_size("adamw_step", n);
  if (n == 0) return;
  adamw_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(param, exp_avg, exp_avg_sq, grad, s, n);
  check_last_launch("adamw_step");
}

void launch_adamw_bnb32_step(cudaStream_t stream, float* param, float* m, float* v, const float* grad,
                             const BnbAdamStepScalars& s, int64_t n) {
  check_size("adamw_bnb32_step", n);
  if (n == 0) return;
  adamw_bnb32_kernel<<<helpers::grid_for(n, kThreads), kThreads, 0, stream>>>(param, m, v, grad, s, n);
  check_last_launch("adamw_bnb32_step");
}

void launch_adamw_bnb8bit_step(cudaStream_t stream, float* param, uint8_t* state1, uint8_t* state2, float* absmax1,
                               float* absmax2, const float* grad, const float* qmaps, const BnbAdamStepScalars& s,
                               int64_t n) {
  check_size("adamw_bnb8bit_step", n);
  if (n == 0) return;
  const int64_t blocks = (n + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize;
  if (blocks > 0x7fffffff) throw EngineError(ErrorCode::BadInput, "adamw_bnb8bit_step: tensor too large");
  adamw_bnb8bit_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(param, state1, state2, absmax1, absmax2, grad, qmaps,
                                                                  s, n);
  check_last_launch("adamw_bnb8bit_step");
}

}  // namespace dpo::cuda
