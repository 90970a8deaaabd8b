// The few-rows NF4 matmul (matmul_nf4_gemv.cpp), which matmul_nf4_forward hands decode-sized batches to.
#pragma once
#include <algorithm>

#include "../quant/nf4.h"
#include "thread_pool.h"
#include "vec.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

// Largest M the register path takes (above it the tiled path decodes rows once into a buffer and reuses them), and
// x rows per pass over the weights in both register paths. Both were measured per kernel set on whole decode steps
// (docs/cpu-kernels.md#where-the-register-path-ends): with AVX2 a pass of 4 rows ran slower than one of 3, and 8 x
// rows decode faster in the tiled path whether the register path runs them in passes of 4 or of 3.
#if defined(__AVX2__) && !defined(__AVX512F__)
constexpr int kGemvMaxRows = 7;
constexpr int kGemvPassRows = 3;
#else
constexpr int kGemvMaxRows = 8;
constexpr int kGemvPassRows = 4;
#endif

// Calls rows(mt, m0, n0, n1) for output rows [n0, n1) and x rows [m0, m0 + mt) over both register paths' split: tasks
// own 16 output rows (one 64-byte line of each output row) and every x row.
template <class Rows>
void for_each_gemv_task(int64_t N, int M, int64_t K, const Rows& rows) {
  constexpr int64_t kTaskRows = 16;
  const double work = 2.0 * double(M) * double(kTaskRows) * double(K);
  parallel_for(ceil_div(N, kTaskRows), grain_for(work), [&](int64_t t0, int64_t t1) {
    const int64_t n0 = t0 * kTaskRows, n1 = std::min(N, t1 * kTaskRows);
    for (int64_t m0 = 0; m0 < M; m0 += kGemvPassRows) rows(int(std::min<int64_t>(kGemvPassRows, M - m0)), m0, n0, n1);
  });
}

// How many bytes ahead of its position a tile prefetches each of its R weight rows (and its packed-order streams of
// the same length per row: byte tables): the same column of a later tile's rows, at least kRowPrefetchBytes ahead.
// A tile reads its R rows in lockstep, so a fixed distance shorter than the R rows' span lands on bytes the tile is
// already reading: at K = 4864 (2432-byte rows), 4 KiB ahead was row r + 1.7, and the down projection streamed from
// memory at 40 GFLOP/s against 55-60 at this distance (docs/cpu-kernels.md#prefetch-a-later-tile).
inline int64_t gemv_prefetch_bytes(int64_t K, int R) {
  const int64_t span = int64_t(R) * (K / 2);  // the tile's packed bytes
  return span > 0 ? ceil_div(kRowPrefetchBytes, span) * span : kRowPrefetchBytes;
}

// The same distance in blocks, for the streams of one entry per block (the fp32 absmax cache).
inline int64_t gemv_prefetch_blocks(int64_t K, int R) { return gemv_prefetch_bytes(K, R) / (kNf4BlockSize / 2); }

// Each of R weight rows' packed bytes and first block index (rows n .. n+R-1, K % 64 == 0), computed once per tile:
// the loop then only adds the block's offset, which keeps the scalar address arithmetic between the vector
// instructions short (docs/cpu-kernels.md).
template <int R>
struct GemvRowStarts {
  const uint8_t* bytes[R];
  uint64_t block[R];
  GemvRowStarts(const Nf4Matrix& w, int64_t n) {
    for (int r = 0; r < R; r++) {
      bytes[r] = w.packed.data() + (n + r) * (w.cols / 2);
      block[r] = uint64_t((n + r) * (w.cols / kNf4BlockSize));
    }
  }
};

// out (M,N) = xb (M,K) . bf16(dequant(W))^T (+ bias), xb already bf16-rounded with row stride K. Returns false
// (and does nothing) when the shape is not for it: M > kGemvMaxRows, or K not a multiple of the 64-element block.
// The FMA path when it builds w's tables with float adds (nf4_fp16_table_usable) and the bf16-dot kernels are not
// the faster choice on this core (nf4_bf16_dot_preferred), else the bf16-dot path
// (nf4_gemv_bf16dot.cpp) when it may run and the inputs are in its exact range, else the FMA path.
bool matmul_nf4_gemv(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M);

// The two paths, same shapes and same bits (docs/cpu-kernels.md#the-bf16-dot-gemv). The bf16-dot one returns false
// (and does nothing) on a CPU without AVX512-BF16 / VBMI, when its probe failed or DPO_CPU_BF16_DOT=0 turned it off,
// or when w or xb is outside its range.
void matmul_nf4_gemv_fma(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M);
bool matmul_nf4_gemv_bf16dot(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M);
// Whether the FMA path builds w's tables with float adds (docs/cpu-kernels.md#the-fp16-table-by-float-adds): the
// AVX-512 set, fp16 storage with every scale in range (Nf4Matrix::fp16_table_normal), the absmax cache present and
// the switch on. Calls on such a matrix take the FMA path even where the bf16-dot path could run.
bool nf4_fp16_table_usable(const Nf4Matrix& w);
// Whether this CPU runs the bf16-dot path and its start-up probe matched the FMA path (computed once).
bool nf4_bf16_dot_usable();
// Whether the bf16-dot kernels are the faster choice here (bf16_dot_rate.cpp): usable, allowed, and vdpbf16ps
// measured at close to vfmadd231ps's rate, or DPO_CPU_BF16_DOT_PREFER / set_nf4_bf16_dot_preference saying so.
bool nf4_bf16_dot_preferred();

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
