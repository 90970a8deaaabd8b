// The fp32 forward of short rows (K = 16..64, a multiple of 16: the LoRA B factor at rank 16-64) with the outputs in
// the lanes, with AVX-512 or AVX2. Each output is still dot16's sum: lane l's fused multiply-add chain over k = l, l +
// 16, ... and then reduce16's tree (l + 8, then + 4, + 2, + 1), so the bits equal the dot tiles' and a decode row's.
// Why: with K = 64 a dot tile spends four multiply-adds per output and then a whole horizontal reduction, mostly
// shuffles on the port the second FMA unit shares (docs/cpu-kernels.md#short-rows).
#pragma once
#include <cstdint>

#include "vec.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

#if defined(__AVX512F__) || defined(__AVX2__)

// Rows and 16-output blocks a short-row tile computes at once. AVX-512: 2 x 2, so each broadcast of x and each load of
// the transposed weights feeds two multiply-adds. AVX2 (a block takes two ymm registers, and the depth-first tree keeps
// about five sets of partial sums live): 1 x 2, the fastest of 1-2 rows x 1-4 blocks in `kernel-bench --op matmul
// --M 758 --N 768` (AVX2 set, 1 thread: x1.28 over the dot tiles at K = 64, x1.86 at 32, x2.5 at 16; 2 x 2 x0.86).
#if defined(__AVX512F__)
constexpr int kShortRows = 2, kShortBlocks = 2;
#else
constexpr int kShortRows = 1, kShortBlocks = 2;
#endif

// What the short-row tiles read: x rows (ldx apart), the weights transposed (wt[k * ldt + n]) and K.
struct ShortDotArgs {
  const float* x;
  int64_t ldx;
  const float* wt;
  int64_t ldt;
  int64_t K;
};

// The tree of reduce16 over lanes, as vertical adds: node<L, S> is the sum of lanes L, L + S, ... of every output
// in the tile (S = 16: lane L's chain itself). Depth first, so only a few partial sums per output are live.
template <int R, int L, int S>
[[gnu::always_inline]]
inline void short_dot_node(f32x16 (&out)[R][kShortBlocks], const ShortDotArgs& a) {
  if constexpr (S == kLanes) {
    for (int i = 0; i < R; i++)
      for (int b = 0; b < kShortBlocks; b++) out[i][b] = f32x16{};
    for (int64_t k = L; k < a.K; k += kLanes) {
      f32x16 wv[kShortBlocks];
      for (int b = 0; b < kShortBlocks; b++) wv[b] = load16(a.wt + k * a.ldt + b * kLanes);
      for (int i = 0; i < R; i++) {
        const f32x16 xv = splat16(a.x[i * a.ldx + k]);
        for (int b = 0; b < kShortBlocks; b++) out[i][b] += xv * wv[b];
      }
    }
  } else {
    f32x16 hi[R][kShortBlocks];
    short_dot_node<R, L, 2 * S>(out, a);
    short_dot_node<R, L + S, 2 * S>(hi, a);
    for (int i = 0; i < R; i++)
      for (int b = 0; b < kShortBlocks; b++) out[i][b] += hi[i][b];
  }
}

// out (R rows, ldo apart) columns [0, 32) = x . w^T (+ bias) for the tile's R rows and 2 x 16 outputs.
template <int R>
inline void short_dot_tile(float* out, int64_t ldo, const ShortDotArgs& a, const float* bias) {
  f32x16 sum[R][kShortBlocks];
  short_dot_node<R, 0, 1>(sum, a);
  for (int i = 0; i < R; i++)
    for (int b = 0; b < kShortBlocks; b++) {
      f32x16 s = sum[i][b];
      if (bias) s += load16(bias + b * kLanes);
      store16(out + i * ldo + b * kLanes, s);
    }
}

// wt (K x 32, ldt = 32) = the transpose of w's rows n0..n0+32 (ldw apart).
inline void transpose_short_rows(float* wt, const float* w, int64_t ldw, int64_t K) {
  for (int64_t n = 0; n < kShortBlocks * kLanes; n++)
    for (int64_t k = 0; k < K; k++) wt[k * kShortBlocks * kLanes + n] = w[n * ldw + k];
}

// Whether the short-row forward takes an M x K by N x K product: K a multiple of 16 up to 64, enough rows to pay
// for the transpose (a decode row keeps the dot tile; same bits either way), 32 or more outputs.
inline bool short_dot_applies(int64_t M, int64_t K, int64_t N) {
  return K % kLanes == 0 && K >= kLanes && K <= 4 * kLanes && M >= 8 && N >= kShortBlocks * kLanes;
}

#endif

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
