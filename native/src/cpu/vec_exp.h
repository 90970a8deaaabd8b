// exp on 16 fp32 lanes for the CPU ops' softmaxes and SwiGLU (docs/cpu-kernels.md#the-vectorised-exp): one polynomial
// per lane instead of a libm call per element. Every lane, and every tail, goes through the same vector code, so an
// element's exp never depends on where it sits in a row, a batch or a thread's range (batch invariance,
// docs/performance.md#batch-invariant-arithmetic).
#pragma once
#include <cstdint>
#include <cstring>

#include "vec.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {
namespace exp_detail {

// exp(x) on one native vector V of floats (GCC vector extension). Method (Cody-Waite, as in Cephes' expf and
// Tang's table-free variant): n = round(x / ln 2), r = x - n ln2 with ln 2 split in a 16-bit head (n * head is exact
// for |n| <= 256, FMA or not) and a tail, exp(r) on |r| <= ln2/2 by its degree-7 Taylor polynomial (truncation
// < 0.1 ulp), then times 2^n as two exact powers of two so that 2^n never leaves the normal range: the product rounds
// once, to a subnormal, to 0 or to inf as the true value does.
template <class V>
inline V exp_lanes(V x) {
  typedef int32_t I __attribute__((vector_size(sizeof(V))));
  const V zero{};
  // Past these exp(x) rounds to inf (e^89 > FLT_MAX) or to 0 (e^-104 < 2^-150, half the least subnormal); clamping
  // keeps n in [-150, 128]. NaN fails both compares and is passed through at the end.
  const V lo = zero - 104.0f, hi = zero + 89.0f;
  V xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  // Adding 1.5 * 2^23 rounds x / ln2 to the nearest integer (ties to even) and leaves it in the low mantissa bits.
  const V shifter = zero + 12582912.0f;
  const V t = xc * 1.44269504088896341f + shifter;
  const V n = t - shifter;
  V r = xc - n * 0.693145751953125f;  // ln2 head: 0x3f317200, 16 significant bits
  r = r - n * 1.428606765330187e-6f;  // ln2 - head
  V p = zero + (1.0f / 5040.0f);
  p = p * r + (1.0f / 720.0f);
  p = p * r + (1.0f / 120.0f);
  p = p * r + (1.0f / 24.0f);
  p = p * r + (1.0f / 6.0f);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const I ni = (I)t - (I)shifter;  // n as an integer
  const I n1 = ni >> 1, n2 = ni - n1;   // each in [-75, 64]
  const V s1 = (V)((n1 + 127) << 23), s2 = (V)((n2 + 127) << 23);
  const V y = (p * s1) * s2;
  return x == x ? y : x + x;
}

}  // namespace exp_detail

// exp of each of the 16 lanes (see exp_lanes; identical bits for a value in any lane).
inline f32x16 exp16(f32x16 x) {
#if defined(__AVX512F__)
  return exp_detail::exp_lanes(x);
#else
  for (int i = 0; i < kParts; i++) x.p[i] = exp_detail::exp_lanes(x.p[i]);
  return x;
#endif
}

// The first n (< 16) floats of p in lanes 0..n-1, `pad` in the rest: a row's tail through the same vector code.
inline f32x16 load16_tail(const float* p, int64_t n, float pad) {
  float t[kLanes];
  for (int l = 0; l < kLanes; l++) t[l] = l < n ? p[l] : pad;
  return load16(t);
}
inline void store16_tail(float* p, f32x16 v, int64_t n) {
  float t[kLanes];
  store16(t, v);
  std::memcpy(p, t, sizeof(float) * size_t(n));
}

// dst[i] = exp(src[i] - shift) * scale for i < n (dst may be src), each exp rounded before the multiply: the
// log-softmax backward's -g softmax in one pass, where an exp pass and a scaling loop made two.
inline void exp_shifted_scaled(float* dst, const float* src, float shift, float scale, int64_t n) {
  const f32x16 s = splat16(-shift), c = splat16(scale);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store16(dst + i, exp16(load16(src + i) + s) * c);
  if (i < n) store16_tail(dst + i, exp16(load16_tail(src + i, n - i, 0.0f) + s) * c, n - i);
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
