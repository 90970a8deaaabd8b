// bnb's quantize_2D (adam::quantize_2d, adam_math.h) computed by counting instead of searching, for the CPU's 8-bit
// AdamW (docs/cpu-kernels.md#8-bit-adamw-finding-the-code-by-counting). Same result for every float x, NaN included
// (test quantize_2d_by_counting_equals_the_search).
//
// Why counting gives the search's result: the search visits odd indices only (127, then +-64, ..., +-2) and its
// last step of +-1 lands on an even index p. The odd indices 1..253 are the inner nodes of a balanced binary search
// tree whose leaves are the even indices, so a leaf p's neighbours p - 1 and p + 1 are both on its path: they are the
// search's last "went up" (lower) and "went down" (upper) pivots, except at p = 0 (never went up: lower keeps its
// initial value) and p = 254 (never went down: upper stays index 255 with value 1.0). With a sorted map, "x >
// code[k]" is true for the odd k below some point and false above, so p = 2 * #{odd k : x > code[k]}; a NaN compares
// false everywhere (p = 0, as in the search). The final midpoint test is the search's, the same fp32 operations.
// The search spends ~50 ns per value on this machine (seven data-dependent branches, about half of them
// mispredicted); the count is 8 compares of 16 lanes and no branch that depends on the table. The 16-lane (AVX-512)
// and 8-lane (AVX2) forms below run many values at once by a branchless search over the same odd codes.
#pragma once
#include <cstdint>

#include "core/fp_ops.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace dpo::adam {

#if defined(__AVX2__)
// The odd entries of a 256-entry map in order, with one NaN pad (never below x): the table every form below reads.
struct OddCodeTable {
  alignas(64) float odd[128];
  explicit OddCodeTable(const float* code) {
    for (int k = 0; k < 127; k++) odd[k] = code[2 * k + 1];
    odd[127] = __builtin_nanf("");
  }
};

// Eight values at once with AVX2 (machines without AVX-512): out[i] = quantize_2d(code, x[i], is_signed), by the
// branchless search over the odd codes and the midpoint test that quantize_2d_count16 below describes.
inline void quantize_2d_count8(uint8_t* out, const float* code, const OddCodeTable& table, __m256 x, bool is_signed) {
  __m256i count = _mm256_setzero_si256();
  for (int step = 64; step >= 1; step /= 2) {
    const __m256i index = _mm256_add_epi32(count, _mm256_set1_epi32(step - 1));
    const __m256 pivot = _mm256_i32gather_ps(table.odd, index, 4);
    const __m256i gt = _mm256_castps_si256(_mm256_cmp_ps(x, pivot, _CMP_GT_OQ));
    count = _mm256_add_epi32(count, _mm256_and_si256(gt, _mm256_set1_epi32(step)));
  }
  const __m256i p = _mm256_slli_epi32(count, 1);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256 top = _mm256_castsi256_ps(_mm256_cmpeq_epi32(p, _mm256_set1_epi32(254)));
  const __m256 bottom = _mm256_castsi256_ps(_mm256_cmpeq_epi32(p, _mm256_setzero_si256()));
  const __m256 val = _mm256_i32gather_ps(code, p, 4);
  const __m256i upper_pivot = _mm256_add_epi32(p, one);
  const __m256 upper = _mm256_blendv_ps(_mm256_i32gather_ps(code, upper_pivot, 4), _mm256_set1_ps(1.0f), top);
  const __m256i lower_pivot = _mm256_max_epi32(_mm256_sub_epi32(p, one), _mm256_setzero_si256());
  const __m256 lower =
      _mm256_blendv_ps(_mm256_i32gather_ps(code, lower_pivot, 4), _mm256_set1_ps(is_signed ? -1.0f : 0.0f), bottom);
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 above = _mm256_cmp_ps(x, val, _CMP_GT_OQ);
  const __m256 go_up =
      _mm256_and_ps(above, _mm256_cmp_ps(x, _mm256_mul_ps(_mm256_add_ps(upper, val), half), _CMP_GT_OQ));
  const __m256 go_down =
      _mm256_andnot_ps(above, _mm256_cmp_ps(x, _mm256_mul_ps(_mm256_add_ps(lower, val), half), _CMP_LT_OQ));
  __m256i c = _mm256_blendv_epi8(p, upper_pivot, _mm256_castps_si256(go_up));
  c = _mm256_blendv_epi8(c, lower_pivot, _mm256_castps_si256(go_down));
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), c);
  for (int i = 0; i < 8; i++) out[i] = uint8_t(lanes[i]);
}
#endif

#if defined(__AVX512F__)
inline uint8_t quantize_2d_count(const float* code, const OddCodeTable& table, float x, bool is_signed) {
  const __m512 xv = _mm512_set1_ps(x);
  int above = 0;
  for (int q = 0; q < 8; q++)
    above += __builtin_popcount(_mm512_cmp_ps_mask(xv, _mm512_load_ps(table.odd + 16 * q), _CMP_GT_OQ));
  const int p = 2 * above;
  const float val = code[p];
  if (x > val) {
    const int upper_pivot = p == 254 ? 255 : p + 1;
    const float upper = p == 254 ? 1.0f : code[p + 1];
    const float midpoint = fp::mul(fp::add(upper, val), 0.5f);
    return uint8_t(x > midpoint ? upper_pivot : p);
  }
  const int lower_pivot = p == 0 ? 0 : p - 1;
  const float lower = p == 0 ? (is_signed ? -1.0f : 0.0f) : code[p - 1];
  const float midpoint = fp::mul(fp::add(lower, val), 0.5f);
  return uint8_t(x < midpoint ? lower_pivot : p);
}

// Sixteen values at once: lane i of the result is quantize_2d_count(code, table, x[i], is_signed). The count of odd
// codes below x comes from a branchless binary search over them instead of 8 compares per value: "x > odd[k]" is
// monotone in k (the map is sorted, the pad is NaN and never below), so seven halvings find where it turns false, and a
// NaN x, true nowhere, lands on 0 as before. Then the same midpoint test, lane by lane (fp32 add, then multiply by 0.5:
// the scalar's fp::add and fp::mul). Result: the 16 codes as bytes.
inline __m128i quantize_2d_count16(const float* code, const OddCodeTable& table, __m512 x, bool is_signed) {
  const __mmask16 all = 0xffff;  // masked forms: GCC 12 warns spuriously on the unmasked gather and shift
  auto gather = [&](__m512i index, const float* table) {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), all, index, table, 4);
  };
  __m512i count = _mm512_setzero_si512();
  for (int step = 64; step >= 1; step /= 2) {
    const __m512 pivot = gather(_mm512_add_epi32(count, _mm512_set1_epi32(step - 1)), table.odd);
    count = _mm512_mask_add_epi32(count, _mm512_cmp_ps_mask(x, pivot, _CMP_GT_OQ), count, _mm512_set1_epi32(step));
  }
  const __m512i p = _mm512_maskz_slli_epi32(all, count, 1);
  const __m512i one = _mm512_set1_epi32(1);
  const __mmask16 top = _mm512_cmpeq_epi32_mask(p, _mm512_set1_epi32(254));
  const __mmask16 bottom = _mm512_cmpeq_epi32_mask(p, _mm512_setzero_si512());
  const __m512 val = gather(p, code);
  // Above val: the upper pivot p + 1 (255 at p = 254), whose value is 1.0 at the top.
  const __m512i upper_pivot = _mm512_add_epi32(p, one);
  const __m512 upper = _mm512_mask_mov_ps(gather(upper_pivot, code), top, _mm512_set1_ps(1.0f));
  // Below val: the lower pivot p - 1, or 0 with value -1 (signed) or 0 at the bottom.
  const __m512i lower_pivot = _mm512_maskz_max_epi32(all, _mm512_sub_epi32(p, one), _mm512_setzero_si512());
  const __m512 lower = _mm512_mask_mov_ps(gather(lower_pivot, code), bottom, _mm512_set1_ps(is_signed ? -1.0f : 0.0f));
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 mid_up = _mm512_mul_ps(_mm512_add_ps(upper, val), half);
  const __m512 mid_low = _mm512_mul_ps(_mm512_add_ps(lower, val), half);
  const __mmask16 above = _mm512_cmp_ps_mask(x, val, _CMP_GT_OQ);
  const __mmask16 go_up = above & _mm512_cmp_ps_mask(x, mid_up, _CMP_GT_OQ);
  const __mmask16 go_down = ~above & _mm512_cmp_ps_mask(x, mid_low, _CMP_LT_OQ);
  __m512i c = _mm512_mask_mov_epi32(p, go_up, upper_pivot);
  c = _mm512_mask_mov_epi32(c, go_down, lower_pivot);
  return _mm512_maskz_cvtepi32_epi8(all, c);
}
#endif

#if defined(__AVX2__)
// The widest of the forms above this build has: out[i] = quantize_2d(code, values[i] / absmax, is_signed) for
// i < kQuantizeLanes (the division IEEE, as fp::div).
#if defined(__AVX512F__)
constexpr int kQuantizeLanes = 16;
inline void quantize_2d_lanes(uint8_t* out, const float* code, const OddCodeTable& table, const float* values,
                              float absmax, bool is_signed) {
  const __m512 x = _mm512_div_ps(_mm512_loadu_ps(values), _mm512_set1_ps(absmax));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), quantize_2d_count16(code, table, x, is_signed));
}
#else
constexpr int kQuantizeLanes = 8;
inline void quantize_2d_lanes(uint8_t* out, const float* code, const OddCodeTable& table, const float* values,
                              float absmax, bool is_signed) {
  quantize_2d_count8(out, code, table, _mm256_div_ps(_mm256_loadu_ps(values), _mm256_set1_ps(absmax)), is_signed);
}
#endif
#endif

}  // namespace dpo::adam
