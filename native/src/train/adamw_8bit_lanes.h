// 8-bit AdamW's two per-element passes (adam::bnb8_moments and adam::bnb8_param, adam_math.h) 16 elements at a time
// with AVX-512: the same IEEE multiplies, adds, divisions and square roots in the same order, each rounded on its own
// (a register barrier after every product keeps the compiler from fusing it into the next add), so every lane gets
// the scalar functions' bits. The scalar loops were 1.9% of a warm training step (docs/cpu-kernels.md#8-bit-adamw-
// finding-the-code-by-counting).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "dpo/backend.h"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace dpo::adam {

constexpr int64_t kMomentLanes = 16;

// The product or sum as computed, never contracted with a neighbour.
inline __m512 kept(__m512 v) {
  __asm__("" : "+v"(v));
  return v;
}

// Plain lane operations in their maskz forms with every lane: GCC 12 warns spuriously on the unmasked intrinsics.
constexpr __mmask16 kAllLanes = 0xffff;
inline __m512 mul(__m512 a, __m512 b) { return kept(_mm512_maskz_mul_ps(kAllLanes, a, b)); }
inline __m512 add(__m512 a, __m512 b) { return kept(_mm512_maskz_add_ps(kAllLanes, a, b)); }

// Lanes whose gradient is finite (g - g is 0 exactly then, NaN for inf and NaN).
inline __mmask16 finite_lanes(__m512 g) {
  return _mm512_cmp_ps_mask(_mm512_maskz_sub_ps(kAllLanes, g, g), _mm512_setzero_ps(), _CMP_EQ_OQ);
}

// Pass 1 for elements [0, 16): m and v from the old codes c1, c2 (maps q1, q2, block absmax a1, a2) and the
// gradient, as bnb8_moments; max1 and max2 take fmax with |m| and |v| (a NaN never enters: max_ps returns its
// second operand when the first is NaN, as fmax ignores a NaN).
inline void moments16(float* m, float* v, const float* g, const uint8_t* c1, const uint8_t* c2, const float* q1,
                      const float* q2, float a1, float a2, const BnbAdamStepScalars& s, __m512& max1, __m512& max2) {
  const __m512 gv = _mm512_loadu_ps(g);
  const __m512i i1 = _mm512_maskz_cvtepu8_epi32(kAllLanes, _mm_loadu_si128(reinterpret_cast<const __m128i*>(c1)));
  const __m512i i2 = _mm512_maskz_cvtepu8_epi32(kAllLanes, _mm_loadu_si128(reinterpret_cast<const __m128i*>(c2)));
  const __m512 q1c = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), kAllLanes, i1, q1, 4);
  const __m512 q2c = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), kAllLanes, i2, q2, 4);
  const __m512 old_v = mul(mul(q2c, _mm512_set1_ps(a2)), _mm512_set1_ps(s.beta2));
  const __m512 g2 = mul(mul(_mm512_set1_ps(s.w2), gv), gv);
  const __m512 old_m = mul(mul(q1c, _mm512_set1_ps(a1)), _mm512_set1_ps(s.beta1));
  const __m512 g1 = mul(_mm512_set1_ps(s.w1), gv);
  const __mmask16 fin = finite_lanes(gv);
  const __m512 mv = _mm512_maskz_add_ps(fin, old_m, g1), vv = _mm512_maskz_add_ps(fin, old_v, g2);
  _mm512_storeu_ps(m, mv);
  _mm512_storeu_ps(v, vv);
  max1 = _mm512_maskz_max_ps(kAllLanes, _mm512_abs_ps(mv), max1);
  max2 = _mm512_maskz_max_ps(kAllLanes, _mm512_abs_ps(vv), max2);
}

// The largest lane of a max accumulator (no NaN in it: any order gives the same value).
inline float lanes_max(__m512 v) {
  alignas(64) float l[kMomentLanes];
  _mm512_store_ps(l, v);
  float mx = l[0];
  for (int64_t i = 1; i < kMomentLanes; i++) mx = std::fmax(mx, l[i]);
  return mx;
}

// Pass 2's parameter step for elements [0, 16), as bnb8_param, where the gradient is finite.
inline void param16(float* p, const float* g, const float* m, const float* v, const BnbAdamStepScalars& s) {
  const __m512 pv = _mm512_loadu_ps(p);
  const __m512 denom = add(_mm512_maskz_sqrt_ps(kAllLanes, _mm512_loadu_ps(v)), _mm512_set1_ps(s.eps_term));
  const __m512 ratio = kept(_mm512_maskz_div_ps(kAllLanes, _mm512_loadu_ps(m), denom));
  __m512 np = add(pv, mul(_mm512_set1_ps(s.step_size), ratio));
  if (s.apply_decay) np = mul(np, _mm512_set1_ps(s.decay));
  _mm512_storeu_ps(p, _mm512_mask_blend_ps(finite_lanes(_mm512_loadu_ps(g)), pv, np));
}

}  // namespace dpo::adam

#endif  // __AVX512F__
