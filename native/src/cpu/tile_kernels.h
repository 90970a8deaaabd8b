// Register-tiled inner kernels of the CPU matmuls (fp32 and fused NF4): a dot-product tile for forward passes and
// an axpy tile for input/weight gradients. Each output element gets the same arithmetic whatever the tile shape.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../core/fp_strict.h"
#include "vec.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

// Tile shapes: only speed depends on them. 6x4 keeps 24 accumulators + 5 operands in the 32 zmm registers of
// AVX-512. With AVX (16 ymm registers) a f32x16 takes 2 registers: dot_tile then runs lanes 0-7 over all of K and
// then lanes 8-15 (the halves never mix before reduce16), so a 4x3 tile holds 12 ymm accumulators, 3 weight and 1 x
// operands: 7 loads per 12 FMAs instead of 1 per FMA. SSE keeps small tiles.
#if defined(__AVX512F__)
constexpr int kDotMR = 6, kDotNR = 4;
#elif defined(__AVX__)
constexpr int kDotMR = 4, kDotNR = 3;
#define DPO_DOT_TILE_HALVES 1
#else
constexpr int kDotMR = 2, kDotNR = 2;
#endif

// Where a tile keeps its lane sums between chunks of K (the NF4 forward at long K, docs/cpu-kernels.md#tiles). The
// default is the whole of K in one go: start from zero, reduce at the end. Otherwise the tile gets one chunk of K (x
// and w point at its first column, K its length: a multiple of 16 unless `finish`), starts from the sums parked at
// `lanes` when `resume`, and either parks them again (16 floats per output, output (i, j) at lanes + (i * ld + j) *
// 16) or, when `finish`, reduces them. Parking is a plain store and load, so each lane's chain is the same fused
// multiply-add chain over increasing k as in one go.
struct LaneSums {
  float* lanes = nullptr;
  int64_t ld = 0;
  bool resume = false, finish = true;
  LaneSums at(int64_t i, int64_t j) const {
    LaneSums s = *this;
    if (lanes) s.lanes = lanes + (i * ld + j) * kLanes;
    return s;
  }
};

// The end of a dot tile whose lane sums cover its chunk of K with no tail: parked for the next chunk (LaneSums, not
// `finish`), or reduced into out[i * ldo + j] (+ bias[j]). The fp32 tiles and the bf16-dot word tiles
// (nf4_tiles_bf16dot.cpp) end the same way, so their bits agree.
template <int MR, int NR>
[[gnu::always_inline]]
inline void finish_dot_tile(float* out, int64_t ldo, const f32x16 (&acc)[MR][NR], const float* bias,
                            const LaneSums& ls) {
  if (!ls.finish) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) store16(ls.lanes + (i * ls.ld + j) * kLanes, acc[i][j]);
    return;
  }
#if defined(__AVX512F__)
  if constexpr (NR == 4) {  // four outputs at a time, in registers
    for (int i = 0; i < MR; i++) {
      __m128 s = reduce16x4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
      if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias));
      _mm_storeu_ps(out + i * ldo, s);
    }
    return;
  }
#endif
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      const float s = reduce16(acc[i][j]);
      out[i * ldo + j] = bias ? s + bias[j] : s;
    }
}

// out[i*ldo + j] = dot16-style sum_k x[i*ldx + k] * w[j*ldw + k] (+ bias[j]) for i < MR, j < NR.
// Lane l of every output sums k = l, l+16, ... in increasing k, the tail goes to lanes 0.., then reduce16:
// exactly dot16(), so a row's result is identical in a 1x1 tile and in a MRxNR tile.
// W is float or uint16_t (bf16 weights, widened exactly on load).
// The form with every output's 16 lanes in registers at once: dot_tile itself where a lane group is one register
// (AVX-512) or registers are plenty (SSE), and with AVX for one x row.
template <int MR, int NR, class W>
inline void dot_tile_one_pass(float* out, int64_t ldo, const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t K,
                              const float* bias, const LaneSums& ls = {}) {
  f32x16 acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = ls.resume ? load16(ls.lanes + (i * ls.ld + j) * kLanes) : f32x16{};
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    f32x16 wv[NR];
    for (int j = 0; j < NR; j++) {
      // One x row (decode): the weight rows stream from memory once (kRowPrefetchBytes).
      if constexpr (MR == 1) __builtin_prefetch(reinterpret_cast<const char*>(w + j * ldw + k) + kRowPrefetchBytes);
      wv[j] = load16(w + j * ldw + k);
      keep_in_register(wv[j]);
    }
    for (int i = 0; i < MR; i++) {
      f32x16 xv = load16(x + i * ldx + k);
      keep_in_register(xv);
      for (int j = 0; j < NR; j++) acc[i][j] += xv * wv[j];
    }
  }
  if (!ls.finish || k == K) {  // parked (chunks of K have no tail), or no tail
    finish_dot_tile<MR, NR>(out, ldo, acc, bias, ls);
    return;
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      const float s = reduce16(fma_tail16(acc[i][j], x + i * ldx, w + j * ldw, k, K));
      out[i * ldo + j] = bias ? s + bias[j] : s;
    }
}

#if defined(DPO_DOT_TILE_HALVES)
// out[i * ldo + j] = reduce16(acc[i][j]) (+ bias[j]): four rows of a column per reduce16x4 (7 shuffles and 8 adds
// for four sums, against 12 and 16 one at a time), the rows left over one at a time. The same bits either way.
template <int MR, int NR>
[[gnu::always_inline]]
inline void store_tile_sums(float* out, int64_t ldo, const f32x16 (&acc)[MR][NR], const float* bias) {
  int i = 0;
  for (; i + 4 <= MR; i += 4)
    for (int j = 0; j < NR; j++) {
      float s[4];
      reduce16x4(acc[i][j], acc[i + 1][j], acc[i + 2][j], acc[i + 3][j], s);
      for (int r = 0; r < 4; r++) out[(i + r) * ldo + j] = bias ? s[r] + bias[j] : s[r];
    }
  for (; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      const float s = reduce16(acc[i][j]);
      out[i * ldo + j] = bias ? s + bias[j] : s;
    }
}

inline f32part load_part(const float* p) {
  f32part v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline f32part load_part(const uint16_t* p) {
  const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16);
  f32part v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}

// The AVX form's two passes: the same lane sums as below, computed one 8-lane half at a time over the whole of K,
// into acc16. Pass h reads the weights of k = 8h + 16g .. + 7 at w + h * w_half + g * WStep of each row: w_half = 8,
// WStep = 16 for plain rows, w_half = half a row, WStep = 8 for split rows (SplitRows below). Always inlined: as a
// function of its own (w_step an argument, or the finish shared) the split tile ran 5-20% slower.
template <int MR, int NR, int WStep, class W>
[[gnu::always_inline]]
inline void dot_halves(f32x16 (&acc16)[MR][NR], const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t w_half,
                       int64_t kfull, const LaneSums& ls) {
  for (int h = 0; h < kParts; h++) {
    f32part acc[MR][NR];
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++)
        acc[i][j] = ls.resume ? load_part(ls.lanes + (i * ls.ld + j) * kLanes + h * kPartLanes) : f32part{};
    const W* wh = w + h * w_half;
    for (int64_t k = h * kPartLanes, g = 0; k < kfull; k += kLanes, g += WStep) {
      f32part wv[NR];
      for (int j = 0; j < NR; j++) {
        wv[j] = load_part(wh + j * ldw + g);
        __asm__("" : "+x"(wv[j]));  // keep_in_register
      }
      for (int i = 0; i < MR; i++) {
        f32part xv = load_part(x + i * ldx + k);
        __asm__("" : "+x"(xv));
        for (int j = 0; j < NR; j++) acc[i][j] += xv * wv[j];
      }
    }
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) acc16[i][j].p[h] = acc[i][j];
  }
}

template <int MR, int NR, class W>
inline void dot_tile(float* out, int64_t ldo, const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t K,
                     const float* bias, const LaneSums& ls = {}) {
  if constexpr (MR == 1) {
    // One x row (decode): its 2 * NR accumulators fit, so one pass, and each weight row streams from memory once
    // with the row prefetch (in two passes the bf16 lm_head streamed at half the bandwidth). The same lane chains.
    dot_tile_one_pass<1, NR>(out, ldo, x, ldx, w, ldw, K, bias, ls);
    return;
  }
  f32x16 acc16[MR][NR];
  const int64_t kfull = K / kLanes * kLanes;
  dot_halves<MR, NR, kLanes>(acc16, x, ldx, w, ldw, /*w_half=*/kPartLanes, kfull, ls);
  if (!ls.finish) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) store16(ls.lanes + (i * ls.ld + j) * kLanes, acc16[i][j]);
    return;
  }
  if (kfull < K)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) acc16[i][j] = fma_tail16(acc16[i][j], x + i * ldx, w + j * ldw, kfull, K);
  store_tile_sums<MR, NR>(out, ldo, acc16, bias);
}

// Weight rows in split form, for the AVX form's two passes (docs/cpu-kernels.md#split-weight-rows-on-avx2): row j
// keeps lanes 0-7 of each 16-element group in its first `half` floats, in group order, and lanes 8-15 in the next
// `half`. Each pass then reads whole cache lines of w, where the plain layout had it fetch every line of the tile
// from L2 in the first pass and use half of it. `+ n` moves n rows, as on a pointer.
struct SplitRows {
  const float* p;
  int64_t half;
  SplitRows operator+(int64_t n) const { return {p + n, half}; }
};

// dot_tile with w in split form; K a multiple of 16 (the rows zero-padded), so there is no tail. Lane l of half h
// still sums k = 8h + l, 8h + l + 16, ... in increasing k: the same chains, the same bits.
template <int MR, int NR>
inline void dot_tile(float* out, int64_t ldo, const float* x, int64_t ldx, SplitRows w, int64_t ldw, int64_t K,
                     const float* bias, const LaneSums& ls = {}) {
  f32x16 acc16[MR][NR];
  dot_halves<MR, NR, kPartLanes>(acc16, x, ldx, w.p, ldw, w.half, K, ls);
  if (!ls.finish) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) store16(ls.lanes + (i * ls.ld + j) * kLanes, acc16[i][j]);
    return;
  }
  store_tile_sums<MR, NR>(out, ldo, acc16, bias);
}

// dst[0, K) in split form (half = K / 2) from a plain row src[0, K) of fp32 or bf16 (widened exactly); K a multiple
// of 16.
template <class W>
inline void split_row(float* dst, const W* src, int64_t K) {
  for (int64_t k = 0, g = 0; k < K; k += kLanes, g += kPartLanes) {
    const f32x16 v = load16(src + k);
    std::memcpy(dst + g, &v.p[0], sizeof v.p[0]);
    std::memcpy(dst + K / 2 + g, &v.p[1], sizeof v.p[1]);
  }
}
#else
template <int MR, int NR, class W>
inline void dot_tile(float* out, int64_t ldo, const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t K,
                     const float* bias, const LaneSums& ls = {}) {
  dot_tile_one_pass<MR, NR>(out, ldo, x, ldx, w, ldw, K, bias, ls);
}
#endif

// Weight rows per task: `cap` (what fits the cache), or fewer when N is small, so that each of `threads` threads
// gets at least two blocks (the 0.42B model's k/v projections have N = 128: three blocks of 52 split 2:1 over two
// threads). A multiple of kDotNR, so only the last block has 1-wide edge columns.
inline int64_t weight_block_rows(int64_t N, int64_t cap, int threads) {
  const int64_t even = round_up(ceil_div(N, 2 * int64_t(std::max(threads, 1))), kDotNR);
  return std::max<int64_t>(kDotNR, std::min(cap, even));
}

// One band of R x rows (R <= kDotMR) against w rows n0..n1: R x kDotNR tiles, then R x 1 for the last columns.
// X and WRows: fp32 x rows against fp32, bf16 or split weight rows, or the bf16-dot kernels' word rows
// (nf4_tiles_bf16dot.cpp), whichever dot_tile overload takes them.
template <int R, class X, class WRows>
inline void dot_band(float* out, int64_t ldo, const X* x, int64_t ldx, WRows w, int64_t ldw, const float* bias,
                     int64_t n0, int64_t n1, int64_t K, const LaneSums& ls) {
  int64_t n = n0;
  for (; n + kDotNR <= n1; n += kDotNR)
    dot_tile<R, kDotNR>(out + n, ldo, x, ldx, w + n * ldw, ldw, K, bias ? bias + n : nullptr, ls.at(0, n));
  for (; n < n1; n++) dot_tile<R, 1>(out + n, ldo, x, ldx, w + n * ldw, ldw, K, bias ? bias + n : nullptr, ls.at(0, n));
}

// The band of the last `rows` rows (rows <= R < kDotMR) in one tile height.
template <int R, class X, class WRows>
inline void dot_leftover_band(int64_t rows, float* out, int64_t ldo, const X* x, int64_t ldx, WRows w, int64_t ldw,
                              const float* bias, int64_t n0, int64_t n1, int64_t K, const LaneSums& ls) {
  if constexpr (R >= 1) {
    if (rows == R) dot_band<R>(out, ldo, x, ldx, w, ldw, bias, n0, n1, K, ls);
    else dot_leftover_band<R - 1>(rows, out, ldo, x, ldx, w, ldw, bias, n0, n1, K, ls);
  }
}

// out (rows m0..m1, ldo) = x (rows m0..m1, ldx) . w (rows n0..n1, ldw)^T (+ bias): bands of kDotMR rows, then one
// band of the 1..kDotMR-1 rows left (M = 64 is 10 bands of 6 and one of 4: running those 4 rows one at a time cost
// ~15% of a prefill matmul). Every output is the same dot_tile lane sum whatever the band. With `ls`, over a chunk
// of K, the lane sums of output (m, n) parked at ls.lanes + (m * ls.ld + n) * 16.
template <class X, class WRows>
inline void dot_rows(float* out, int64_t ldo, const X* x, int64_t ldx, WRows w, int64_t ldw, const float* bias,
                     int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K, const LaneSums& ls = {}) {
  int64_t m = m0;
  for (; m + kDotMR <= m1; m += kDotMR)
    dot_band<kDotMR>(out + m * ldo, ldo, x + m * ldx, ldx, w, ldw, bias, n0, n1, K, ls.at(m, 0));
  dot_leftover_band<kDotMR - 1>(m1 - m, out + m * ldo, ldo, x + m * ldx, ldx, w, ldw, bias, n0, n1, K, ls.at(m, 0));
}

// Where the sums of an axpy tile start and end when a product runs over j in chunks (accumulate_product, the NF4
// input gradient): `zero_start` (the first chunk) starts them from zero instead of loading acc, and `add_to` (the
// last chunk) adds them to rows ldo apart there instead of storing them to acc. The same bits as filling acc with
// zeros first and adding it to those rows afterwards, without the two extra passes over acc (~2% of a training
// step, docs/cpu-kernels.md#gradient-products). `overwrite`: the rows at add_to hold nothing yet and get 0 + sum,
// what a zero-filled output would have held.
struct AxpyEnds {
  bool zero_start = false;
  float* add_to = nullptr;
  int64_t ldo = 0;
  bool overwrite = false;
  AxpyEnds at(int64_t i, int64_t l) const {
    AxpyEnds e = *this;
    if (add_to) e.add_to = add_to + i * ldo + l;
    return e;
  }
};

// The end of an axpy tile: its sums a stored to acc (rows lda apart), or added to ends.add_to (AxpyEnds). The fp32
// tiles and the bf16-dot pair tiles (nf4_tiles_bf16dot.cpp) end the same way.
template <int IR, int LQ>
[[gnu::always_inline]]
inline void finish_axpy_tile(float* acc, int64_t lda, const f32x16 (&a)[IR][LQ], const AxpyEnds& ends) {
  if (ends.add_to) {
    for (int i = 0; i < IR; i++)
      for (int q = 0; q < LQ; q++) {
        float* o = ends.add_to + i * ends.ldo + q * kLanes;
        store16(o, (ends.overwrite ? f32x16{} : load16(o)) + a[i][q]);
      }
    return;
  }
  for (int i = 0; i < IR; i++)
    for (int q = 0; q < LQ; q++) store16(acc + i * lda + q * kLanes, a[i][q]);
}

// acc[i*lda + l] += sum_{j in [0,J)} coef[i*csi + j*csj] * b[j*ldb + l], j in increasing order, for i < IR and
// l < 16*LQ. Each acc element is a sequential fp32 sum over j, so chunking j (resuming from acc) or changing IR
// never changes it. With `ends`, acc starts from zero or the sums go to ends.add_to (AxpyEnds).
template <int IR, int LQ, class B>
inline void axpy_tile(float* acc, int64_t lda, const float* coef, int64_t csi, int64_t csj, const B* b, int64_t ldb,
                      int64_t J, const AxpyEnds& ends = {}) {
  f32x16 a[IR][LQ];
  for (int i = 0; i < IR; i++)
    for (int q = 0; q < LQ; q++) a[i][q] = ends.zero_start ? f32x16{} : load16(acc + i * lda + q * kLanes);
  for (int64_t j = 0; j < J; j++) {
    f32x16 bv[LQ];
    for (int q = 0; q < LQ; q++) bv[q] = load16(b + j * ldb + q * kLanes);
    for (int i = 0; i < IR; i++) {
      const f32x16 c = splat16(coef[i * csi + j * csj]);
      for (int q = 0; q < LQ; q++) a[i][q] += c * bv[q];
    }
  }
  finish_axpy_tile<IR, LQ>(acc, lda, a, ends);
}

// The scalar form of axpy_tile for a ragged column tail (L < 16): a sequential sum over j per element.
template <class B>
inline void axpy_tail(float* acc, int64_t lda, const float* coef, int64_t csi, int64_t csj, const B* b, int64_t ldb,
                      int64_t I, int64_t J, int64_t L, const AxpyEnds& ends = {}) {
  for (int64_t i = 0; i < I; i++)
    for (int64_t l = 0; l < L; l++) {
      float s = ends.zero_start ? 0.0f : acc[i * lda + l];
      // The product rounded on its own: what GCC has always compiled this loop to for fp32 b (it vectorises it
      // without contracting), now written down so a bf16 b (whose loop GCC contracts) gives the same bits.
      for (int64_t j = 0; j < J; j++) s += mul_rn(coef[i * csi + j * csj], widen(b[j * ldb + l]));
      if (ends.add_to) {
        float& o = ends.add_to[i * ends.ldo + l];
        o = (ends.overwrite ? 0.0f : o) + s;
      } else acc[i * lda + l] = s;
    }
}

#if defined(__AVX512F__)
// 24 zmm accumulators, 4 loads and 6 broadcasts per 24 FMAs: the NF4 input gradient at K = 768, N = 2048 ran
// ~5% faster than with 4 x 4 (kernel-bench nf4-dx, 8 interleaved runs; docs/cpu-kernels.md#gradient-products).
constexpr int kAxpyIR = 6, kAxpyLQ = 4;
#elif defined(__AVX__)
// 3 rows x 32 columns: 12 ymm accumulators, 4 loads + 3 broadcasts per 12 FMAs. OpenBLAS Haswell's 6 x 16 (2 loads +
// 6 broadcasts) ran the NF4 input gradient 3-7% slower on a Zen 3 core, GCC unrolling its loop into reloads of b
// (kernel-bench nf4-dx, docs/cpu-kernels.md#gradient-products).
constexpr int kAxpyIR = 3, kAxpyLQ = 2;
#else
constexpr int kAxpyIR = 2, kAxpyLQ = 2;  // 4 lane groups of accumulators
#endif
constexpr int kAxpyCols = kAxpyLQ * kLanes;

// The last `rows` rows (rows < R) in one tile of that height: a LoRA weight gradient has 64 rows, 10 tiles of 6 and
// 4 left, which one row at a time reused each loaded b vector once instead of four times.
template <int R, int LQ, class C, class BRows>
inline void axpy_leftover(int64_t rows, float* acc, int64_t lda, const C* coef, int64_t csi, int64_t csj, BRows b,
                          int64_t ldb, int64_t J, const AxpyEnds& ends) {
  if constexpr (R >= 1) {
    if (rows == R) axpy_tile<R, LQ>(acc, lda, coef, csi, csj, b, ldb, J, ends);
    else axpy_leftover<R - 1, LQ>(rows, acc, lda, coef, csi, csj, b, ldb, J, ends);
  }
}

// acc (I rows, lda) += coef (I x J, strides csi/csj) . b (J rows, ldb) over columns [0, L): full kAxpyCols tiles,
// then 16-wide tiles, then the scalar tail; rows in bands of kAxpyIR and one band of the rows left. Every element is
// the same sequential sum over j. `ends` as in axpy_tile, its add_to at row 0, column 0 of acc.
// C and BRows: fp32 coefficients against fp32 or bf16 rows, or the bf16-dot kernels' pairs of both
// (nf4_tiles_bf16dot.cpp, L a multiple of 16 there), whichever axpy_tile overload takes them.
template <class C, class BRows>
inline void axpy_rows(float* acc, int64_t lda, const C* coef, int64_t csi, int64_t csj, BRows b, int64_t ldb, int64_t I,
                      int64_t J, int64_t L, const AxpyEnds& ends = {}) {
  int64_t l = 0;
  for (; l + kAxpyCols <= L; l += kAxpyCols) {
    int64_t i = 0;
    for (; i + kAxpyIR <= I; i += kAxpyIR)
      axpy_tile<kAxpyIR, kAxpyLQ>(acc + i * lda + l, lda, coef + i * csi, csi, csj, b + l, ldb, J, ends.at(i, l));
    axpy_leftover<kAxpyIR - 1, kAxpyLQ>(I - i, acc + i * lda + l, lda, coef + i * csi, csi, csj, b + l, ldb, J,
                                        ends.at(i, l));
  }
  for (; l + kLanes <= L; l += kLanes) {
    int64_t i = 0;
    for (; i + kAxpyIR <= I; i += kAxpyIR)
      axpy_tile<kAxpyIR, 1>(acc + i * lda + l, lda, coef + i * csi, csi, csj, b + l, ldb, J, ends.at(i, l));
    axpy_leftover<kAxpyIR - 1, 1>(I - i, acc + i * lda + l, lda, coef + i * csi, csi, csj, b + l, ldb, J,
                                  ends.at(i, l));
  }
  if constexpr (std::is_same_v<C, float>)
    if (l < L) axpy_tail(acc + l, lda, coef, csi, csj, b + l, ldb, I, J, L - l, ends.at(0, l));
}

// Rows per task of a gradient product: all of a training micro-batch (up to 256 rows) in one block, so that each
// column block of the weights is decoded or widened once, not once per 64 rows (a pair's micro-batch has ~100-180
// rows, its lm_head ~66 scored rows: blocks of 64 widened the 32000-row lm_head twice, once for 2 rows); larger I in
// even blocks of at most 256. A multiple of the axpy tile's rows where I allows.
inline int64_t backward_row_block(int64_t I) {
  const int64_t blocks = ceil_div(I, 256);
  return std::min(I, round_up(ceil_div(I, blocks), kAxpyIR));
}

// Columns per task of a gradient product (out (I, L) in blocks of IB rows x LB columns): at most 256 (the
// accumulator stays in L2), a multiple of the axpy tile's width, and few enough that every thread gets at least two
// tasks. L = 768 in blocks of 256 on 2 threads was 3 tasks: one thread ran two, the other one and then waited.
// Only the split depends on it: every element is the same sequential sum over j.
// `align` (a multiple of kAxpyCols): blocks a multiple of it, as the NF4 input gradient asks for whole NF4
// blocks of 64 columns.
// The task count is made a multiple of the threads where a few more column blocks allow it: a training step's
// input gradients at L = 768 were 3 x 3 = 9 equal tasks, which 2 threads ran as 5 + 4, one of them idle for a ninth
// of the product (now 3 x 4 blocks of 192).
inline int64_t backward_column_block(int64_t L, int64_t row_blocks, int threads, int64_t align = kAxpyCols) {
  const int64_t t = std::max(threads, 1);
  const int64_t want = std::max(ceil_div(L, 256), ceil_div(2 * t, row_blocks));
  auto block = [&](int64_t blocks) { return std::max<int64_t>(align, round_up(ceil_div(L, blocks), align)); };
  for (int64_t blocks = want; blocks < want + t; blocks++)
    if (ceil_div(L, block(blocks)) * row_blocks % t == 0) return block(blocks);
  return block(want);
}

// dst[0, n) = b[0, n) as fp32 (bf16 widened exactly).
template <class B>
inline void widen_row(float* dst, const B* b, int64_t n) {
  int64_t l = 0;
  for (; l + kLanes <= n; l += kLanes) store16(dst + l, load16(b + l));
  for (; l < n; l++) dst[l] = widen(b[l]);
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
