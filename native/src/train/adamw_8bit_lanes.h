// 8-bit AdamW's two per-element passes (adam::bnb8_moments and adam::bnb8_param, adam_math.h) 16 elements at a time
// with AVX-512 and 8 with AVX2: the same IEEE multiplies, adds, divisions and square roots in the same order, each
// rounded on its own (a register barrier after every product keeps the compiler from fusing it into the next add), so
// every lane gets the scalar functions' bits. The scalar loops were 1.9% of a warm training step with AVX-512; with
// the AVX2 set the optimizer fell from 1.30% to 1.04% (docs/cpu-kernels.md#8-bit-adamw-finding-the-code-by-counting).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "dpo/backend.h"

#if defined(__AVX2__)
#include <immintrin.h>

namespace dpo::adam {

#if defined(__AVX512F__)
// The lane operations the passes need, on one AVX-512 register. The maskz forms with every lane: GCC 12 warns
// spuriously on the unmasked intrinsics.
struct Lanes {
  using V = __m512;
  static constexpr int64_t kCount = 16;
  static constexpr __mmask16 kAll = 0xffff;
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V mul(V a, V b) { return _mm512_maskz_mul_ps(kAll, a, b); }
  static V add(V a, V b) { return _mm512_maskz_add_ps(kAll, a, b); }
  static V div(V a, V b) { return _mm512_maskz_div_ps(kAll, a, b); }
  static V sqrt(V a) { return _mm512_maskz_sqrt_ps(kAll, a); }
  // max_ps returns its second operand when the first is NaN, as fmax ignores a NaN.
  static V max(V a, V b) { return _mm512_maskz_max_ps(kAll, a, b); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  // The map values of the 16 codes at c.
  static V codes(const float* q, const uint8_t* c) {
    const __m512i i = _mm512_maskz_cvtepu8_epi32(kAll, _mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), kAll, i, q, 4);
  }
  // Lanes whose gradient is finite (g - g is 0 exactly then, NaN for inf and NaN).
  static __mmask16 finite(V g) { return _mm512_cmp_ps_mask(_mm512_maskz_sub_ps(kAll, g, g), V{}, _CMP_EQ_OQ); }
  // x where g is finite, +0 elsewhere; `when_finite` where g is finite, `otherwise` elsewhere.
  static V zero_unless_finite(V g, V x) { return _mm512_maskz_mov_ps(finite(g), x); }
  static V pick_finite(V g, V otherwise, V when_finite) {
    return _mm512_mask_blend_ps(finite(g), otherwise, when_finite);
  }
};
#else
// The same on one AVX2 register: masks are all-ones lanes, so the zero comes from an and and the choice from a blend.
struct Lanes {
  using V = __m256;
  static constexpr int64_t kCount = 8;
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V abs(V a) { return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }
  static V codes(const float* q, const uint8_t* c) {
    const __m256i i = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
    return _mm256_i32gather_ps(q, i, 4);
  }
  static V finite(V g) { return _mm256_cmp_ps(_mm256_sub_ps(g, g), _mm256_setzero_ps(), _CMP_EQ_OQ); }
  static V zero_unless_finite(V g, V x) { return _mm256_and_ps(x, finite(g)); }
  static V pick_finite(V g, V otherwise, V when_finite) { return _mm256_blendv_ps(otherwise, when_finite, finite(g)); }
};
#endif

constexpr int64_t kMomentLanes = Lanes::kCount;
using MomentLanes = Lanes::V;
inline MomentLanes lanes_of(float x) { return Lanes::set1(x); }

// The product or sum as computed, never contracted with a neighbour.
inline MomentLanes kept(MomentLanes v) {
  __asm__("" : "+v"(v));
  return v;
}
inline MomentLanes mul(MomentLanes a, MomentLanes b) { return kept(Lanes::mul(a, b)); }
inline MomentLanes add(MomentLanes a, MomentLanes b) { return kept(Lanes::add(a, b)); }

// Pass 1 for elements [0, kMomentLanes): m and v from the old codes c1, c2 (maps q1, q2, block absmax a1, a2) and
// the gradient, as bnb8_moments; max1 and max2 take fmax with |m| and |v| (a NaN never enters: see Lanes::max).
inline void moments_lanes(float* m, float* v, const float* g, const uint8_t* c1, const uint8_t* c2, const float* q1,
                          const float* q2, float a1, float a2, const BnbAdamStepScalars& s, MomentLanes& max1,
                          MomentLanes& max2) {
  using L = Lanes;
  const MomentLanes gv = L::load(g);
  const MomentLanes old_v = mul(mul(L::codes(q2, c2), L::set1(a2)), L::set1(s.beta2));
  const MomentLanes g2 = mul(mul(L::set1(s.w2), gv), gv);
  const MomentLanes old_m = mul(mul(L::codes(q1, c1), L::set1(a1)), L::set1(s.beta1));
  const MomentLanes g1 = mul(L::set1(s.w1), gv);
  const MomentLanes mv = L::zero_unless_finite(gv, add(old_m, g1)), vv = L::zero_unless_finite(gv, add(old_v, g2));
  L::store(m, mv);
  L::store(v, vv);
  max1 = L::max(L::abs(mv), max1);
  max2 = L::max(L::abs(vv), max2);
}

// The largest lane of a max accumulator (no NaN in it: any order gives the same value).
inline float lanes_max(MomentLanes v) {
  float l[kMomentLanes];
  std::memcpy(l, &v, sizeof l);
  float mx = l[0];
  for (int64_t i = 1; i < kMomentLanes; i++) mx = std::fmax(mx, l[i]);
  return mx;
}

// Pass 2's parameter step for elements [0, kMomentLanes), as bnb8_param, where the gradient is finite.
inline void param_lanes(float* p, const float* g, const float* m, const float* v, const BnbAdamStepScalars& s) {
  using L = Lanes;
  const MomentLanes pv = L::load(p);
  const MomentLanes denom = add(L::sqrt(L::load(v)), L::set1(s.eps_term));
  const MomentLanes ratio = kept(L::div(L::load(m), denom));
  MomentLanes np = add(pv, mul(L::set1(s.step_size), ratio));
  if (s.apply_decay) np = mul(np, L::set1(s.decay));
  L::store(p, L::pick_finite(L::load(g), pv, np));
}

}  // namespace dpo::adam

#endif  // __AVX2__
