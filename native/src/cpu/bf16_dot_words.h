// The word order of the bf16-dot kernels (docs/cpu-kernels.md#the-bf16-dot-gemv): x and decoded NF4 weights as bf16
// words laid out so that one vdpbf16ps runs two steps of each lane's FMA chain in the chain's own order. Shared by
// the GEMV (nf4_gemv_bf16dot.cpp) and the tiled forward (nf4_tiles_bf16dot.cpp); AVX-512 kernel set only.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "matmul_nf4_gemv.h"
#include "nf4_lanes.h"
#include "../quant/nf4.h"
#include "vec.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__GNUC__)
#define DPO_HAVE_BF16_DOT_WORDS 1
// The kernel set is compiled for x86-64-v4, which has neither instruction family: the functions that use them ask
// for them here, and run only behind the CPU check (nf4_bf16_dot_usable).
#define DPO_BF16_DOT_TARGET __attribute__((target("avx512bf16,avx512vbmi")))

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

// x's range (docs/cpu-kernels.md#the-bf16-dot-gemv): 0, or 2^-50 <= |x| <= 2^60 (false for inf and NaN).
inline bool bf16_dot_x_in_range(const float* xb, int64_t n) {
  return zero_or_magnitude_within(xb, n, std::ldexp(1.0f, -50), std::ldexp(1.0f, 60));
}

// Lane L sums class k % 16 == L. vdpbf16ps adds word 2L+1's product before word 2L's, so within a group of 32
// elements word 2L+1 carries element L and word 2L element L+16; a 64-element block is two such groups.
inline int element_of_word(int w) { return w % 2 == 1 ? w / 2 : w / 2 + 16; }

// rows x cols bf16-valued floats (row stride ldx; cols a multiple of 32) as words in that order, rows of ldw words.
// The upper halves of the floats are the bf16 values (exact); one vpermw per 32 words orders them.
DPO_BF16_DOT_TARGET inline void pack_words(uint16_t* xw, int64_t ldw, const float* xb, int64_t ldx, int64_t rows,
                                           int64_t cols) {
  alignas(64) uint16_t order[32];
  for (int w = 0; w < 32; w++) order[w] = uint16_t(element_of_word(w));
  __m512i idx;
  std::memcpy(&idx, order, sizeof idx);
  const __mmask16 all16 = 0xffff;  // maskz forms: see nf4_lanes.h
  for (int64_t r = 0; r < rows; r++) {
    const float* src = xb + r * ldx;
    uint16_t* dst = xw + r * ldw;
    for (int64_t c = 0; c < cols; c += 32) {
      const __m512i lo = _mm512_maskz_loadu_epi32(all16, src + c), hi = _mm512_maskz_loadu_epi32(all16, src + c + 16);
      const __m256i lo_words = _mm512_maskz_cvtepi32_epi16(all16, _mm512_maskz_srli_epi32(all16, lo, 16));
      const __m256i hi_words = _mm512_maskz_cvtepi32_epi16(all16, _mm512_maskz_srli_epi32(all16, hi, 16));
      const __m512i words = _mm512_maskz_inserti64x4(0xff, _mm512_castsi256_si512(lo_words), hi_words, 1);
      _mm512_storeu_si512(dst + c, _mm512_maskz_permutexvar_epi16(~__mmask32(0), idx, words));
    }
  }
}

// One vpermb per block and weight row: word w's low byte is the packed byte of the first group's element for word
// w, its high byte that of the second group's (16 bytes on: the same nibble of the block's second half). A shift per
// word and group brings the nibble to bits 0..3; bit 4 may keep junk, which the doubled 32-word table makes
// harmless, and vpermw ignores the bits above.
struct NibbleSelect {
  __m512i bytes, shifts[2];
};
inline NibbleSelect nibble_select() {
  alignas(64) uint8_t sel[64];
  alignas(64) uint16_t sh[2][32];
  for (int w = 0; w < 32; w++) {
    const int e = element_of_word(w);
    sel[2 * w] = uint8_t(e / 2);
    sel[2 * w + 1] = uint8_t(e / 2 + 16);
    sh[0][w] = uint16_t(e % 2 == 0 ? 4 : 0);
    sh[1][w] = uint16_t(sh[0][w] + 8);
  }
  NibbleSelect s;
  std::memcpy(&s.bytes, sel, 64);
  std::memcpy(&s.shifts[0], sh[0], 64);
  std::memcpy(&s.shifts[1], sh[1], 64);
  return s;
}

// How a matrix's block tables are made: NF4[i] * absmax rounded to bf16 (bf16 or fp32 storage), to fp16 first (fp16
// storage) by the conversions, or by float adds where every scale allows it (nf4_fp16_table_usable,
// docs/cpu-kernels.md#the-fp16-table-by-float-adds): the same values, the last without vcvtps2ph's round trip.
enum class WordTable { Bf16, Fp16Converted, Fp16Adds };

inline WordTable word_table_for(const Nf4Matrix& w) {
  if (w.dtype != Nf4StorageDType::F16) return WordTable::Bf16;
  return nf4_fp16_table_usable(w) ? WordTable::Fp16Adds : WordTable::Fp16Converted;
}

// A block's 16 table entries as bf16 words, twice (32 words): vcvtne2ps2bf16 rounds to nearest even like round_bf16
// for every finite normal fp32 value, which are all the table holds inside the range (docs/cpu-kernels.md).
DPO_BF16_DOT_TARGET inline __m512i block_table_words(const float* amax, WordTable kind) {
  f32x16 v;
  if (kind == WordTable::Fp16Adds) {
    v = block_lut_fp16_normal(*amax);  // fp16 values: the conversion below rounds them to bf16
  } else {
    v = load16(kNf4Table) * *amax;  // the FMA path's multiply (block_lut_bf16), the absmax broadcast from memory
    if (kind == WordTable::Fp16Converted) v = round_fp16_x16(v);
  }
  __m512 f;
  std::memcpy(&f, &v, sizeof f);
  const __m512bh t = _mm512_cvtne2ps_pbh(f, f);
  __m512i r;
  std::memcpy(&r, &t, sizeof r);
  return r;
}

// A block's 64 weights (its 32 packed bytes at `bytes`) as the two groups' words, from its table.
struct BlockWords {
  __m512i group[2];
};
DPO_BF16_DOT_TARGET inline BlockWords block_words(const uint8_t* bytes, __m512i table, const NibbleSelect& sel) {
  // The selector reads bytes 0..31 only, so a plain 32-byte load will do (the upper half is never read): on Zen 4 a
  // broadcast from memory takes a shuffle unit, as the vpermb and vpermw after it do, and a load does not
  // (docs/cpu-kernels.md#zen-4s-shuffle-units). (maskz forms with full masks: GCC 12 warns spuriously on the unmasked
  // ones, as in nf4_lanes.h; the zero-extending casts warn too)
  const __m512i b = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes)));
  const __m512i picked = _mm512_maskz_permutexvar_epi8(~__mmask64(0), sel.bytes, b);
  BlockWords out;
  for (int g = 0; g < 2; g++) {
    const __m512i idx = _mm512_maskz_srlv_epi16(~__mmask32(0), picked, sel.shifts[g]);
    out.group[g] = _mm512_maskz_permutexvar_epi16(~__mmask32(0), idx, table);
  }
  return out;
}

inline __m512bh as_bf16_words(__m512i v) {
  __m512bh r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
#endif
