// NF4 decoding on 16 lanes, shared by the fused NF4 matmuls: a block's 16-entry table of bf16-valued weights
// (docs/cpu-kernels.md) and the lookup of 16 packed nibbles in it, done in registers (AVX-512 / AVX2) or in scalar
// code.
#pragma once
#include <cstring>

#include "../core/fp_strict.h"
#include "../core/half.h"
#include "../quant/nf4.h"
#include "vec.h"

#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

// round_bf16 on a vector of lanes (RN-even, NaN kept quiet), bit for bit the scalar one in core/half.h.
// kMayBeNaN = false drops the NaN arm (5 of its 10 vector instructions): the caller knows no lane is NaN, and for
// every other input, infinities included, the rounding arm alone gives the same bits.
template <class U, bool kMayBeNaN, class F>
inline F round_bf16_lanes(F v) {
  U u;
  std::memcpy(&u, &v, sizeof u);
  const U rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  U r = rounded;
  if constexpr (kMayBeNaN) {
    const U quiet_nan = (u | 0x00400000u) & 0xffff0000u;
    r = (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
  }
  std::memcpy(&v, &r, sizeof v);
  return v;
}

#if defined(__AVX512F__)
typedef uint32_t u32x16 __attribute__((vector_size(64)));
template <bool kMayBeNaN = true>
inline f32x16 round_bf16_x16(f32x16 v) {
  return round_bf16_lanes<u32x16, kMayBeNaN>(v);
}
#else
typedef uint32_t u32part __attribute__((vector_size(sizeof(f32part))));
template <bool kMayBeNaN = true>
inline f32x16 round_bf16_x16(f32x16 v) {
  for (int i = 0; i < kParts; i++) v.p[i] = round_bf16_lanes<u32part, kMayBeNaN>(v.p[i]);
  return v;
}
#endif

// round_fp16 on 16 lanes: the F16C / AVX-512 conversions round to nearest even with subnormals and overflow to inf,
// exactly as the scalar round_fp16 (the tests compare both); scalar code otherwise.
inline f32x16 round_fp16_x16(f32x16 v) {
#if defined(__AVX512F__)
  const __mmask16 all = 0xffff;  // maskz forms: see lookup16
  const __m256i h =
      _mm512_maskz_cvtps_ph(all, reinterpret_cast<__m512&>(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_maskz_cvtph_ps(all, h);
  std::memcpy(&v, &r, sizeof v);
  return v;
#elif defined(__F16C__) && defined(__AVX__)
  for (int i = 0; i < kParts; i++) {
    __m256 p;
    std::memcpy(&p, &v.p[i], sizeof p);
    p = _mm256_cvtph_ps(_mm256_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    std::memcpy(&v.p[i], &p, sizeof p);
  }
  return v;
#else
  float a[16];
  std::memcpy(a, &v, sizeof a);
  for (float& f : a) f = round_fp16(f);
  std::memcpy(&v, a, sizeof v);
  return v;
#endif
}

// The 16 values a block with dequantized absmax `amax` decodes to, as the GEMM sees them
// (docs/reference/linear4bit.md#prefill-and-training-path of the reference semantics: the double rounding fp32 ->
// storage dtype -> bf16 of `dequantize_4bit(W).to(bf16)`). kFiniteFast: see block_lut_bf16_gemv.
template <bool kFiniteFast = false>
inline f32x16 block_lut_bf16(float amax, Nf4StorageDType dtype) {
  f32x16 v = load16(kNf4Table) * amax;  // one fp32 multiply per entry, as the dequant kernel
  if (dtype == Nf4StorageDType::F16) v = round_fp16_x16(v);
  if constexpr (kFiniteFast) {
    uint32_t bits;
    std::memcpy(&bits, &amax, sizeof bits);
    if ((bits & 0x7f800000u) != 0x7f800000u) return round_bf16_x16<false>(v);
  }
  return round_bf16_x16<true>(v);
}

// The same table for the decode GEMV, where building it is a large share of the work per weight: a finite absmax
// times the finite table entries is never NaN (the fp16 rounding may overflow to inf, not to NaN), so only a NaN or
// infinite absmax (inf * 0) needs the NaN arm of the rounding. The branch is per block and predicted; the table is
// the same bits either way (docs/cpu-kernels.md). The tiled path keeps the branch-free form: there the table is
// built once per block for a whole batch, and the branch measured no faster.
inline f32x16 block_lut_bf16_gemv(float amax, Nf4StorageDType dtype) { return block_lut_bf16<true>(amax, dtype); }

#if defined(__AVX512F__)
// The first step of both fp16 tables below: the products p = NF4[i] * amax (rounded on their own, as the dequant
// kernel: never fused into the add), E = 2^floor(log2|p|) from p's exponent bits, and y = RN(p + E * 1.5 * 2^13) =
// RN_fp16(p) + C.
struct Fp16RoundingStep {
  __m512 e, y;
};
inline Fp16RoundingStep fp16_rounding_step(float amax) {
  __m512 p = _mm512_mul_ps(_mm512_loadu_ps(kNf4Table), _mm512_set1_ps(amax));
  __asm__("" : "+v"(p));  // never fused into the add below
  const __m512 e = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(p), _mm512_set1_epi32(0x7f800000)));
  return {e, _mm512_fmadd_ps(e, _mm512_set1_ps(12288.0f), p)};
}

// block_lut_bf16(amax, F16) for a matrix whose every block has 2^-10 <= amax <= 2^15 (Nf4Matrix::fp16_table_normal):
// there every nonzero entry p = NF4[i] * amax is a normal fp16 value, and rounding p to fp16 (11 significant bits)
// and then to bf16 (8) is two float adds each: with E = 2^floor(log2|p|), C = 1.5 * 2^(e+13) puts p + C in a binade
// whose spacing is p's fp16 spacing, so RN(p + C) - C is RN_fp16(p), ties to even, exactly; C = 1.5 * 2^(e+16) does
// the same for bf16 (docs/cpu-kernels.md#the-fp16-table-by-float-adds). Five vector instructions instead of the
// conversions' round trip and the integer bf16 rounding.
inline f32x16 block_lut_bf16_fp16_normal(float amax) {
  const Fp16RoundingStep s = fp16_rounding_step(amax);
  __m512 y = _mm512_fmadd_ps(s.e, _mm512_set1_ps(86016.0f), s.y);  // + (1.5 * 2^(e+16) - C), rounded once: bf16 spacing
  y = _mm512_fnmadd_ps(s.e, _mm512_set1_ps(98304.0f), y);  // - 1.5 * 2^(e+16), exact
  f32x16 out;
  std::memcpy(&out, &y, sizeof out);
  return out;
}

// The same block's 16 entries rounded to fp16 only, RN_fp16(NF4[i] * amax) as fp32 values (the first add above and
// its exact inverse), for the bf16-dot kernels: their conversion to bf16 words (vcvtne2ps2bf16, round to nearest
// even) is the second rounding, so the table costs one FMA fewer (docs/cpu-kernels.md#the-fp16-table-by-float-adds).
inline f32x16 block_lut_fp16_normal(float amax) {
  const Fp16RoundingStep s = fp16_rounding_step(amax);
  const __m512 y = _mm512_fnmadd_ps(s.e, _mm512_set1_ps(12288.0f), s.y);  // - C, exact (within a factor 2 of y)
  f32x16 out;
  std::memcpy(&out, &y, sizeof out);
  return out;
}
#endif

// A block's dequantized absmax computed from the double-quantized parts, as nf4_dequantize_absmax does (the product
// rounded on its own, then the offset added): the kernels read 1 byte per block instead of the 4-byte cache.
// (An unsigned block index: its nested block is one shift, where a signed one needs a sign fix-up per call.)
inline float block_absmax(const Nf4Matrix& w, const float* code8, uint64_t b) {
  return mul_rn(code8[w.absmax_q[b]], w.absmax2[b / kNestedBlockSize]) + w.absmax_offset;
}

#if defined(__AVX2__) && !defined(__AVX512F__)
// out[i] = lut[idx[i] & 15] for 8 lanes: two 8-entry permutes, and bit 3 of the index picks between them.
inline void table_lookup8(f32part& out, const f32x16& lut, __m256i idx) {
  __m256 lo, hi;
  std::memcpy(&lo, &lut.p[0], sizeof lo);
  std::memcpy(&hi, &lut.p[1], sizeof hi);
  const __m256 use_hi = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));  // bit 3 -> sign bit
  const __m256 r = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), use_hi);
  std::memcpy(&out, &r, sizeof r);
}
#endif

// 16 elements (8 packed bytes, even element = high nibble) looked up in a block's table: exactly lut[nibble].
// The table stays in registers: one permute on AVX-512, two and a blend on AVX2.
inline f32x16 lookup16(f32x16 lut, const uint8_t* bytes) {
#if defined(__AVX512F__)
  // (maskz forms with a full mask: GCC 12 warns spuriously on the unmasked ones' undefined pass-through.)
  const __mmask16 all = 0xffff;
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
  __m512i idx = _mm512_maskz_cvtepu8_epi32(all, _mm_unpacklo_epi8(b, b));  // b0 b0 b1 b1 ... b7 b7
  const __m512i shifts = _mm512_set_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
  idx = _mm512_maskz_srlv_epi32(all, idx, shifts);  // hi0 lo0 hi1 lo1 ... (+ junk bits the permute ignores)
  const __m512 r = _mm512_maskz_permutexvar_ps(all, idx, reinterpret_cast<__m512&>(lut));
  f32x16 out;
  std::memcpy(&out, &r, sizeof out);
  return out;
#elif defined(__AVX2__)
  const __m256i shifts = _mm256_set_epi32(0, 4, 0, 4, 0, 4, 0, 4);
  f32x16 out;
  for (int h = 0; h < 2; h++) {
    int32_t four;
    std::memcpy(&four, bytes + 4 * h, 4);
    const __m128i b = _mm_cvtsi32_si128(four);
    const __m256i idx = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), shifts);
    table_lookup8(out.p[h], lut, idx);
  }
  return out;
#else
  float t[16], o[16];
  std::memcpy(t, &lut, sizeof t);
  for (int i = 0; i < 8; i++) {
    o[2 * i] = t[bytes[i] >> 4];
    o[2 * i + 1] = t[bytes[i] & 0x0f];
  }
  return load16(o);
#endif
}

// The register path's lane order (docs/cpu-kernels.md): physical lane p of a 16-element chunk holds chunk element
// kPackedLaneElement[p], the nibble at bit 2*(p - p%2) + 32*(p%2) of the chunk's 8 bytes read as one little-endian
// word. That order lets one broadcast and one shift per 8 lanes put every nibble in place. Each lane still sums one
// fixed k % 16 class in increasing k; the x operand is permuted the same way and the sums are put back in k order
// before reduce16, so the result is the in-order one bit for bit.
constexpr int kPackedLaneElement[16] = {1, 9, 0, 8, 3, 11, 2, 10, 5, 13, 4, 12, 7, 15, 6, 14};

// The chunk's 16 weights (8 packed bytes) from the block table, in kPackedLaneElement order.
inline f32x16 lookup16_packed_order(f32x16 lut, const uint8_t* bytes) {
  uint64_t word;
  std::memcpy(&word, bytes, sizeof word);
#if defined(__AVX512F__)
  const __mmask16 all = 0xffff;  // maskz forms: see lookup16
  const __m512i shifts = _mm512_set_epi64(28, 24, 20, 16, 12, 8, 4, 0);
  const __m512i idx = _mm512_maskz_srlv_epi64(0xff, _mm512_set1_epi64(int64_t(word)), shifts);  // nibble: bits 0..3
  const __m512 r = _mm512_maskz_permutexvar_ps(all, idx, reinterpret_cast<__m512&>(lut));
  f32x16 out;
  std::memcpy(&out, &r, sizeof out);
  return out;
#elif defined(__AVX2__)
  const __m256i q = _mm256_set1_epi64x(int64_t(word));
  f32x16 out;
  for (int h = 0; h < 2; h++)
    table_lookup8(out.p[h], lut, _mm256_srlv_epi64(q, _mm256_set_epi64x(16 * h + 12, 16 * h + 8, 16 * h + 4, 16 * h)));
  return out;
#else
  float t[16], o[16];
  std::memcpy(t, &lut, sizeof t);
  for (int p = 0; p < 16; p++) o[p] = t[(word >> (2 * (p - p % 2) + 32 * (p % 2))) & 15];
  return load16(o);
#endif
}

#if defined(__AVX2__) && !defined(__AVX512F__)
#define DPO_NF4_BYTE_TABLES 1
// The AVX2 decode GEMV's lookup by bytes (docs/cpu-kernels.md#byte-tables-on-avx2). AVX2 has no 16-entry float
// permute, so lookup16 spends two permutes and a blend on 8 weights; vpshufb instead looks up 32 bytes in a 16-byte
// table per instruction. A block's 16 table entries are bf16 values (the low half of each float is zero), so two byte
// tables, the entries' low and high bytes, each in both 128-bit halves, give any weight's bf16 bits in two lookups.
struct Nf4ByteTables {
  __m256i lo, hi;
};

inline Nf4ByteTables block_byte_tables(const f32x16& lut) {
  __m256i a, b;
  std::memcpy(&a, &lut.p[0], sizeof a);
  std::memcpy(&b, &lut.p[1], sizeof b);
  // The 16 bf16 words: packus leaves entries 0-3, 8-11 | 4-7, 12-15; the 64-bit permute puts them in order.
  const __m256i words =
      _mm256_permute4x64_epi64(_mm256_packus_epi32(_mm256_srli_epi32(a, 16), _mm256_srli_epi32(b, 16)), 0xd8);
  // Each 128-bit half: the low bytes of its 8 words, then their high bytes.
  const __m256i split =
      _mm256_shuffle_epi8(words, _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8,
                                                  10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  return {_mm256_permute4x64_epi64(split, 0x88), _mm256_permute4x64_epi64(split, 0xdd)};
}

// A block's two tables as the cache keeps them (matmul_nf4_prepare): its 16 low bytes, then its 16 high bytes.
inline void store_byte_tables(uint8_t* dst, const Nf4ByteTables& t) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(t.lo));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16), _mm256_castsi256_si128(t.hi));
}
inline Nf4ByteTables load_byte_tables(const uint8_t* src) {
  return {_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))),
          _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16)))};
}

// Physical position p of a 32-weight group (16 packed bytes) holds group element kByteGroupElement[p]. The high
// nibbles (even elements) are looked up in the lower 128-bit half and the low nibbles (odd elements) in the upper one;
// unpacking the low and high bytes gives words in pairs (elements 4i and 4i + 2 of each half's run), and each pair's
// dword gives its two floats by a shift (the first word) and a mask (the second), which gives this order. Positions
// p and p + 16 hold elements e and e + 16, one k % 16 lane class, so one accumulator position adds its class in
// increasing k.
constexpr int kByteGroupElement[32] = {0,  4,  8,  12, 1,  5,  9,  13, 2,  6,  10, 14, 3,  7,  11, 15,
                                       16, 20, 24, 28, 17, 21, 25, 29, 18, 22, 26, 30, 19, 23, 27, 31};

// The 32 weights of 16 packed bytes (even element = high nibble), exactly the table's entries, as two f32x16 in
// kByteGroupElement order: `first` holds positions 0-15, `second` 16-31. A bf16 word becomes a float by a 16-bit
// shift or by masking the dword it shares with its neighbour: on Zen 3 the mask runs on any vector pipe, where the
// unpacks with zero it replaces took the two shuffle pipes, which the lookups already keep busy.
inline void lookup32_bytes(f32x16& first, f32x16& second, const Nf4ByteTables& t, const uint8_t* bytes) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)));
  // The lower half's dwords shifted right by 4, the upper half's not, in one variable shift: the mask then keeps each
  // byte's high nibble below and its low nibble above (the bits a shift brings in from the next byte are masked off).
  // One instruction where a shift and a blend were two: 8% fewer cycles per block in a register-only loop on Zen 4
  // (docs/cpu-kernels.md#cached-byte-tables-on-avx2).
  const __m256i idx =
      _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(4, 4, 4, 4, 0, 0, 0, 0)), _mm256_set1_epi8(0x0f));
  const __m256i lo = _mm256_shuffle_epi8(t.lo, idx), hi = _mm256_shuffle_epi8(t.hi, idx);
  const __m256i w_first = _mm256_unpacklo_epi8(lo, hi), w_second = _mm256_unpackhi_epi8(lo, hi);
  const __m256i upper = _mm256_set1_epi32(int32_t(0xffff0000u));
  const __m256i f[4] = {_mm256_slli_epi32(w_first, 16), _mm256_and_si256(w_first, upper),
                        _mm256_slli_epi32(w_second, 16), _mm256_and_si256(w_second, upper)};
  std::memcpy(&first.p[0], &f[0], sizeof first.p[0]);
  std::memcpy(&first.p[1], &f[1], sizeof first.p[1]);
  std::memcpy(&second.p[0], &f[2], sizeof second.p[0]);
  std::memcpy(&second.p[1], &f[3], sizeof second.p[1]);
}

// The same 32 weights in element order, for the tiled path's decoded panels
// (docs/cpu-kernels.md#byte-tables-for-the-decoded-panels): elements 0-7, 8-15, 16-23 and 24-31 stored at dst[0..3]
// (8 floats each). One more shuffle than lookup32_bytes: the packed bytes are first spread so that the in-lane unpacks
// leave each group of 8 whole (the lower 128-bit half takes bytes 0, 1, 4, 5, 8, 9, 12, 13, the upper one the
// others, each byte twice: high nibble, then low). Stored straight from the integer registers: through an array of
// parts GCC went via the stack and stalled on store forwarding.
inline void lookup32_bytes_in_order(float* const (&dst)[4], const Nf4ByteTables& t, const uint8_t* bytes) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)));
  const __m256i dup = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 0, 1, 1, 4, 4, 5, 5, 8, 8, 9, 9, 12, 12, 13, 13, 2, 2,
                                                              3, 3, 6, 6, 7, 7, 10, 10, 11, 11, 14, 14, 15, 15));
  // Even bytes: the high nibble (from the word shifted right by 4), odd bytes: the low one.
  const __m256i idx = _mm256_and_si256(_mm256_blendv_epi8(dup, _mm256_srli_epi16(dup, 4), _mm256_set1_epi16(0x0080)),
                                       _mm256_set1_epi8(0x0f));
  const __m256i lo = _mm256_shuffle_epi8(t.lo, idx), hi = _mm256_shuffle_epi8(t.hi, idx);
  const __m256i w_a = _mm256_unpacklo_epi8(lo, hi), w_b = _mm256_unpackhi_epi8(lo, hi);
  const __m256i zero = _mm256_setzero_si256();
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[0]), _mm256_unpacklo_epi16(zero, w_a));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[1]), _mm256_unpackhi_epi16(zero, w_a));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[2]), _mm256_unpacklo_epi16(zero, w_b));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[3]), _mm256_unpackhi_epi16(zero, w_b));
}
#endif

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
