// The tiled NF4 matmuls on AVX512-BF16 (docs/cpu-kernels.md#bf16-dot-tiles): prefill, the reference pass and
// training run the dot tiles of matmul_nf4.cpp's forward, and the axpy tiles of its input gradient, with one
// vdpbf16ps in place of two FMAs. Both operands are bf16 values, so each product is exact and each accumulation one
// rounding, as in the GEMV's bf16-dot path; the words are laid out so that every lane runs its FMA chain's steps in
// the chain's own order. Same sums, same bits as the fp32 tiles.
#include "nf4_tiles_bf16dot.h"

#include "bf16_dot_words.h"
#include "kernel_set.h"
#include "matmul_nf4_gemv.h"
#include "nf4_bf16_dot_switch.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

#if defined(DPO_HAVE_BF16_DOT_WORDS)
namespace {

// Decoded weight rows as words, ldw words apart (`+ n` moves n words, as on a pointer): the form dot_rows hands to
// the word tile below.
struct WordRows {
  const uint16_t* p;
  WordRows operator+(int64_t n) const { return {p + n}; }
};

// dot_tile over words: the accumulators are the fp32 tile's lane sums (lane L = class k % 16 == L), two steps of each
// chain per instruction; parked, resumed and reduced exactly as there.
template <int MR, int NR>
DPO_BF16_DOT_TARGET void dot_tile(float* out, int64_t ldo, const uint16_t* x, int64_t ldx, WordRows w, int64_t ldw,
                                  int64_t K, const float* bias, const LaneSums& ls) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++)
      acc[i][j] = ls.resume ? _mm512_loadu_ps(ls.lanes + (i * ls.ld + j) * kLanes) : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m512bh wv[NR];
    for (int j = 0; j < NR; j++) wv[j] = as_bf16_words(_mm512_loadu_si512(w.p + j * ldw + k));
    for (int i = 0; i < MR; i++) {
      const __m512bh xv = as_bf16_words(_mm512_loadu_si512(x + i * ldx + k));
      for (int j = 0; j < NR; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  f32x16 lanes[MR][NR];
  std::memcpy(lanes, acc, sizeof lanes);
  finish_dot_tile<MR, NR>(out, ldo, lanes, bias, ls);
}

// Pairs of rows as dwords, ldb dwords apart (`+ n` moves n dwords): the axpy tile's b in the input gradient.
struct PairRows {
  const uint32_t* p;
  PairRows operator+(int64_t n) const { return {p + n}; }
};

// axpy_tile over pairs: step j of the fp32 tile's chain for every acc element is coef[i, j] * b[j, l] in increasing
// j; one vdpbf16ps takes steps 2p and 2p + 1 in that order (the high word's product first), from a coefficient
// dword (coef[2p] high, coef[2p + 1] low) broadcast against the dwords (b[2p, l] high, b[2p + 1, l] low). J pairs.
template <int IR, int LQ>
DPO_BF16_DOT_TARGET void axpy_tile(float* acc, int64_t lda, const uint32_t* coef, int64_t csi, int64_t csj, PairRows b,
                                   int64_t ldb, int64_t J, const AxpyEnds& ends) {
  __m512 a[IR][LQ];
  for (int i = 0; i < IR; i++)
    for (int q = 0; q < LQ; q++)
      a[i][q] = ends.zero_start ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + i * lda + q * kLanes);
  for (int64_t j = 0; j < J; j++) {
    __m512bh bv[LQ];
    for (int q = 0; q < LQ; q++) bv[q] = as_bf16_words(_mm512_loadu_si512(b.p + j * ldb + q * kLanes));
    for (int i = 0; i < IR; i++) {
      const __m512bh c = as_bf16_words(_mm512_set1_epi32(int(coef[i * csi + j * csj])));
      for (int q = 0; q < LQ; q++) a[i][q] = _mm512_dpbf16_ps(a[i][q], c, bv[q]);
    }
  }
  f32x16 sums[IR][LQ];
  std::memcpy(sums, a, sizeof sums);
  finish_axpy_tile<IR, LQ>(acc, lda, sums, ends);
}

// The dword of two bf16-valued floats: hi's bf16 bits in the high word, lo's in the low word.
inline __m512i pair_dwords(__m512i hi, __m512i lo) {
  const __mmask16 all = 0xffff;  // maskz forms: see nf4_lanes.h
  return _mm512_maskz_or_epi32(all, _mm512_maskz_and_epi32(all, hi, _mm512_set1_epi32(int(0xffff0000u))),
                               _mm512_maskz_srli_epi32(all, lo, 16));
}

// Whether the first cols values of each of `rows` rows (ld apart) are in the bf16-dot kernels' exact range (the
// padding past cols is not read).
bool rows_in_range(const float* v, int64_t ld, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++)
    if (!bf16_dot_x_in_range(v + r * ld, cols)) return false;
  return true;
}

}  // namespace

bool nf4_bf16_dot_tiles_for(const Nf4Matrix& w) {
  return w.cols % kNf4BlockSize == 0 && w.bf16_dot_exact && nf4_bf16_dot_preferred();
}

bool nf4_bf16_dot_pack_x(uint16_t* xw, int64_t ldxw, const float* xb, int64_t ldx, int64_t M, int64_t K) {
  if (!rows_in_range(xb, ldx, M, K)) return false;
  pack_words(xw, ldxw, xb, ldx, M, K);
  return true;
}

DPO_BF16_DOT_TARGET void nf4_decode_row_words(uint16_t* out, int64_t ldw, const Nf4Matrix& w, const float* absmax,
                                              int64_t n0, int64_t n1, int64_t k0, int64_t k1) {
  constexpr int64_t kPrefetchBytes = 1024;  // as decode_blocks_bf16: the packed bytes stream from memory once
  static const NibbleSelect sel = nibble_select();
  const int64_t row_blocks = w.cols / kNf4BlockSize, count = (k1 - k0) / kNf4BlockSize;
  const WordTable kind = word_table_for(w);
  for (int64_t n = n0; n < n1; n++) {
    const int64_t b0 = n * row_blocks + k0 / kNf4BlockSize;
    const uint8_t* packed = w.packed.data() + b0 * (kNf4BlockSize / 2);
    uint16_t* row = out + (n - n0) * ldw;
    for (int64_t b = 0; b < count; b++, packed += kNf4BlockSize / 2, row += kNf4BlockSize) {
      __builtin_prefetch(packed + kPrefetchBytes);  // past the matrix's end: a hint that never faults
      const BlockWords words = block_words(packed, block_table_words(absmax + b0 + b, kind), sel);
      _mm512_storeu_si512(row, words.group[0]);
      _mm512_storeu_si512(row + 32, words.group[1]);
    }
  }
}

void nf4_bf16_dot_rows(float* out, int64_t ldo, const uint16_t* xw, int64_t ldxw, const uint16_t* ww, int64_t ldw,
                       const float* bias, int64_t rows, int64_t cols, int64_t K, const LaneSums& ls) {
  dot_rows(out, ldo, xw, ldxw, WordRows{ww}, ldw, bias, 0, rows, 0, cols, K, ls);
}

bool nf4_bf16_dot_pack_pairs(uint32_t* out, int64_t ldo, const float* db, int64_t ldb, int64_t M, int64_t N) {
  if (!rows_in_range(db, ldb, M, N)) return false;
  for (int64_t m = 0; m < M; m++)
    for (int64_t p = 0; p < N / 2; p++) {
      uint32_t hi, lo;
      std::memcpy(&hi, db + m * ldb + 2 * p, sizeof hi);
      std::memcpy(&lo, db + m * ldb + 2 * p + 1, sizeof lo);
      out[m * ldo + p] = (hi & 0xffff0000u) | (lo >> 16);
    }
  return true;
}

void nf4_pair_rows(uint32_t* out, int64_t ldo, const float* rows, int64_t ldr, int64_t pairs, int64_t L) {
  for (int64_t p = 0; p < pairs; p++) {
    const float* hi = rows + 2 * p * ldr;
    for (int64_t l = 0; l < L; l += kLanes)
      _mm512_storeu_si512(out + p * ldo + l, pair_dwords(_mm512_loadu_si512(hi + l), _mm512_loadu_si512(hi + ldr + l)));
  }
}

void nf4_bf16_dot_axpy_rows(float* acc, int64_t lda, const uint32_t* coef, int64_t csi, const uint32_t* b, int64_t ldb,
                            int64_t I, int64_t J, int64_t L, const AxpyEnds& ends) {
  axpy_rows(acc, lda, coef, csi, /*csj=*/1, PairRows{b}, ldb, I, J, L, ends);
}
#else
bool nf4_bf16_dot_tiles_for(const Nf4Matrix&) { return false; }
bool nf4_bf16_dot_pack_pairs(uint32_t*, int64_t, const float*, int64_t, int64_t, int64_t) { return false; }
void nf4_pair_rows(uint32_t*, int64_t, const float*, int64_t, int64_t, int64_t) {}
void nf4_bf16_dot_axpy_rows(float*, int64_t, const uint32_t*, int64_t, const uint32_t*, int64_t, int64_t, int64_t,
                            int64_t, const AxpyEnds&) {}
bool nf4_bf16_dot_pack_x(uint16_t*, int64_t, const float*, int64_t, int64_t, int64_t) { return false; }
void nf4_decode_row_words(uint16_t*, int64_t, const Nf4Matrix&, const float*, int64_t, int64_t, int64_t, int64_t) {}
void nf4_bf16_dot_rows(float*, int64_t, const uint16_t*, int64_t, const uint16_t*, int64_t, const float*, int64_t,
                       int64_t, int64_t, const LaneSums&) {}
#endif

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
