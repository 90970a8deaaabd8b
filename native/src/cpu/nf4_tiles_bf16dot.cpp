// The tiled NF4 forward on AVX512-BF16 (docs/cpu-kernels.md#bf16-dot-tiles): prefill, the reference pass and
// training run the dot tiles of matmul_nf4.cpp with one vdpbf16ps in place of two FMAs. x and the decoded weights
// are bf16 values, so each product is exact and each accumulation one rounding, as in the GEMV's bf16-dot path; the
// words are laid out (bf16_dot_words.h) so that every lane runs its FMA chain's steps in the chain's own k order.
// Same lane sums, same reductions, same bits as the fp32 tiles.
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
  if (!ls.finish) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) _mm512_storeu_ps(ls.lanes + (i * ls.ld + j) * kLanes, acc[i][j]);
    return;
  }
  f32x16 lanes[MR][NR];
  std::memcpy(lanes, acc, sizeof lanes);
  if constexpr (NR == 4) {
    for (int i = 0; i < MR; i++) {
      __m128 s = reduce16x4(lanes[i][0], lanes[i][1], lanes[i][2], lanes[i][3]);
      if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias));
      _mm_storeu_ps(out + i * ldo, s);
    }
    return;
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      const float s = reduce16(lanes[i][j]);
      out[i * ldo + j] = bias ? s + bias[j] : s;
    }
}

}  // namespace

bool nf4_bf16_dot_tiles_for(const Nf4Matrix& w) {
  return w.cols % kNf4BlockSize == 0 && w.bf16_dot_exact && nf4_bf16_dot_preferred();
}

bool nf4_bf16_dot_pack_x(uint16_t* xw, int64_t ldxw, const float* xb, int64_t ldx, int64_t M, int64_t K) {
  for (int64_t m = 0; m < M; m++)
    if (!bf16_dot_x_in_range(xb + m * ldx, K)) return false;
  pack_words(xw, ldxw, xb, ldx, M, K);
  return true;
}

DPO_BF16_DOT_TARGET void nf4_decode_row_words(uint16_t* out, int64_t ldw, const Nf4Matrix& w, const float* absmax,
                                              int64_t n0, int64_t n1, int64_t k0, int64_t k1) {
  constexpr int64_t kPrefetchBytes = 1024;  // as decode_blocks_bf16: the packed bytes stream from memory once
  static const NibbleSelect sel = nibble_select();
  const int64_t row_blocks = w.cols / kNf4BlockSize, count = (k1 - k0) / kNf4BlockSize;
  const bool fp16_storage = w.dtype == Nf4StorageDType::F16;
  for (int64_t n = n0; n < n1; n++) {
    const int64_t b0 = n * row_blocks + k0 / kNf4BlockSize;
    const uint8_t* packed = w.packed.data() + b0 * (kNf4BlockSize / 2);
    uint16_t* row = out + (n - n0) * ldw;
    for (int64_t b = 0; b < count; b++, packed += kNf4BlockSize / 2, row += kNf4BlockSize) {
      __builtin_prefetch(packed + kPrefetchBytes);  // past the matrix's end: a hint that never faults
      const BlockWords words = block_words(packed, block_table_words(absmax + b0 + b, fp16_storage), sel);
      _mm512_storeu_si512(row, words.group[0]);
      _mm512_storeu_si512(row + 32, words.group[1]);
    }
  }
}

void nf4_bf16_dot_rows(float* out, int64_t ldo, const uint16_t* xw, int64_t ldxw, const uint16_t* ww, int64_t ldw,
                       const float* bias, int64_t rows, int64_t cols, int64_t K, const LaneSums& ls) {
  dot_rows(out, ldo, xw, ldxw, WordRows{ww}, ldw, bias, 0, rows, 0, cols, K, ls);
}
#else
bool nf4_bf16_dot_tiles_for(const Nf4Matrix&) { return false; }
bool nf4_bf16_dot_pack_x(uint16_t*, int64_t, const float*, int64_t, int64_t, int64_t) { return false; }
void nf4_decode_row_words(uint16_t*, int64_t, const Nf4Matrix&, const float*, int64_t, int64_t, int64_t, int64_t) {}
void nf4_bf16_dot_rows(float*, int64_t, const uint16_t*, int64_t, const uint16_t*, int64_t, const float*, int64_t,
                       int64_t, int64_t, const LaneSums&) {}
#endif

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
