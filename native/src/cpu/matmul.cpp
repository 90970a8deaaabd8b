// fp32 linear layer on the CPU (LoRA factors, lm_head, any unquantized weight): out = x . w^T + bias, and its
// backward. Work is split only across independent outputs, so each element's arithmetic is fixed (batch-invariant).
#include <algorithm>
#include <type_traits>

#include "kernel_set.h"
#include "short_dot_forward.h"
#include "thread_pool.h"
#include "tile_kernels.h"

DPO_DECLARE_OWN_MATMUL_KERNELS()

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {  // one copy per kernel set (kernel_set.h)

namespace {

#if defined(__AVX512F__) || defined(__AVX2__)
// forward() for short rows (short_dot_forward.h): tasks of 32 weight rows, each transposed once into the task's
// panel and run against every x row, kShortRows rows at a time; the last N % (16 kShortBlocks) outputs through the dot
// tiles.
void short_rows_forward(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) {
  constexpr int64_t kCols = kShortBlocks * kLanes;
  const int64_t blocks = N / kCols, tail = N - blocks * kCols;
  parallel_for(blocks + (tail ? 1 : 0), grain_for(2.0 * M * kCols * K), [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> wt_buf;
    float* wt = scratch(wt_buf, size_t(K * kCols));
    for (int64_t t = t0; t < t1; t++) {
      const int64_t n0 = t * kCols;
      if (t == blocks) {
        dot_rows(out, N, x, K, w, K, bias, 0, M, n0, N, K);
        continue;
      }
      transpose_short_rows(wt, w + n0 * K, K, K);
      const float* b = bias ? bias + n0 : nullptr;
      int64_t m = 0;
      for (; m + kShortRows <= M; m += kShortRows)
        short_dot_tile<kShortRows>(out + m * N + n0, N, {x + m * K, K, wt, kCols, K}, b);
      for (; m < M; m++) short_dot_tile<1>(out + m * N + n0, N, {x + m * K, K, wt, kCols, K}, b);
    }
  });
}
#endif

// W: float, or uint16_t for bf16 weights (widened exactly, so the same bits as on the fp32 copy).
template <class W>
void forward(float* out /*(M,N)*/, const float* x /*(M,K)*/, const W* w /*(N,K)*/, const float* bias /*(N) or null*/,
             int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
#if defined(__AVX512F__) || defined(__AVX2__)
  if constexpr (std::is_same_v<W, float>) {
    if (short_dot_applies(M, K, N)) return short_rows_forward(out, x, w, bias, M, K, N);
  }
#endif
  // x copied once into rows 64-byte aligned and one cache line longer than K rounded up to 16 (ldx): a caller's
  // rows start 16 bytes into a cache line (every 16-float load of them straddled two lines), and at K = 768 their
  // 3 KiB stride put a tile's 6 rows in two L1 sets (docs/cpu-kernels.md#tiles). Worth it once the weights are wide
  // enough to reuse each row many times; the tiles read only columns < K, so the padding stays unwritten.
  const bool copy_x = M > 1 && N >= 64 && K >= kLanes;
  const int64_t ldx = copy_x ? round_up(K, kLanes) + kLanes : K;
  if (copy_x) {
    thread_local std::vector<float> xc_buf;
    float* xc = scratch(xc_buf, size_t(M * ldx));
    parallel_for(M, grain_for(double(K), 32768.0), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; m++) std::copy(x + m * K, x + (m + 1) * K, xc + m * ldx);
    });
    x = xc;
  }
  // Blocks: ~256 KB of w per task so it stays in L2 while every x row of the block streams past it.
  const int64_t NB = weight_block_rows(N, (65536 / std::max(K, 1)) / kDotNR * kDotNR, cpu_thread_count());
  const int64_t MB = 64;
  const int64_t nblocks = ceil_div(N, NB), mblocks = ceil_div(M, MB);
  // More than one band of rows (a training or reference pass, a prompt) copies each weight block once into a panel
  // that every band's tiles read: bf16 rows widened once instead of in every tile (two ALU operations per weight
  // vector, on the FMA ports), and with AVX any weight in split form (SplitRows, tile_kernels.h), which the two-pass
  // tile reads in whole cache lines. One band (decode) streams the rows as they are: half the bytes for bf16.
#if defined(DPO_DOT_TILE_HALVES)
  const bool split = M > kDotMR && K % kLanes == 0;
#else
  constexpr bool split = false;
#endif
  const bool use_panel = split || (!std::is_same_v<W, float> && M > kDotMR);
  const double work = 2.0 * double(std::min<int64_t>(MB, M)) * double(std::min<int64_t>(NB, N)) * K;
  parallel_for(nblocks * mblocks, grain_for(work), [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> panel_buf;
    int64_t widened_nb = -1;
    for (int64_t t = t0; t < t1; t++) {
      const int64_t nb = t / mblocks, mb = t % mblocks;
      const int64_t n0 = nb * NB, n1 = std::min<int64_t>(N, n0 + NB);
      const int64_t m0 = mb * MB, m1 = std::min<int64_t>(M, m0 + MB);
      if (!use_panel) {
        dot_rows(out, N, x, ldx, w, K, bias, m0, m1, n0, n1, K);
        continue;
      }
      const int64_t ldp = round_up(K, kLanes) + kLanes;  // padded as x is
      float* panel = scratch(panel_buf, size_t(NB * ldp));
      if (nb != widened_nb) {
        for (int64_t n = n0; n < n1; n++) {
#if defined(DPO_DOT_TILE_HALVES)
          if (split) {
            split_row(panel + (n - n0) * ldp, w + n * K, K);
            continue;
          }
#endif
          widen_row(panel + (n - n0) * ldp, w + n * K, K);
        }
        widened_nb = nb;
      }
#if defined(DPO_DOT_TILE_HALVES)
      if (split) {
        dot_rows(out + n0, N, x, ldx, SplitRows{panel, K / 2}, ldp, bias ? bias + n0 : nullptr, m0, m1, 0, n1 - n0, K);
        continue;
      }
#endif
      dot_rows(out + n0, N, x, ldx, panel, ldp, bias ? bias + n0 : nullptr, m0, m1, 0, n1 - n0, K);
    }
  });
}

// How many rows ahead accumulate_product asks for the segment of b it widens next.
constexpr int64_t kSegmentAheadRows = 8;

// Asks for the cache lines of p[0, n).
template <class B>
inline void prefetch_span(const B* p, int64_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < n * int64_t(sizeof(B)); off += 64) __builtin_prefetch(c + off);
}

// out (I,L) += coef (I,J) . b (J,L) where coef[i][j] = coef[i*csi + j*csj]: the shared form of both gradients.
// Each element is summed over j = 0..J-1 in order from zero (in registers, or parked in acc between chunks of j), then
// added to out once, so the result does not depend on how the (i, l) blocks are split across threads.
template <class B>
void accumulate_product(float* out /*(I,L)*/, const float* coef, int64_t csi, int64_t csj, const B* b /*(J,L)*/,
                        int64_t I, int64_t J, int64_t L) {
  const int64_t IB = backward_row_block(I), JB = 128;
  const int64_t iblocks = ceil_div(I, IB);
  const int64_t LB = backward_column_block(L, iblocks, cpu_thread_count());
  const int64_t lblocks = ceil_div(L, LB);
  const double work = 2.0 * double(std::min(IB, I)) * double(std::min(LB, L)) * double(J);
  parallel_for(iblocks * lblocks, grain_for(work), [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> buf, panel_buf;
    float* acc = scratch(buf, size_t(IB * LB));
    // b's (JB x LB) slice copied as fp32, rows one cache line apart beyond their length: every axpy tile of the
    // block walks down it, so it is widened (bf16) once per block instead of once per tile, and its rows do not
    // pile into a few L1 sets (b's own row stride is a multiple of 1 KiB at hidden sizes 768 and 2048).
    const int64_t ldp = LB + kLanes;
    float* panel = scratch(panel_buf, size_t(JB * ldp));
    for (int64_t t = t0; t < t1; t++) {
      const int64_t i0 = (t / lblocks) * IB, i1 = std::min(I, i0 + IB);
      const int64_t l0 = (t % lblocks) * LB, l1 = std::min(L, l0 + LB);
      for (int64_t j0 = 0; j0 < J; j0 += JB) {
        const int64_t j1 = std::min(J, j0 + JB);
        for (int64_t j = j0; j < j1; j++) {
          // b's rows stream from memory (the bf16 lm_head's input gradient reads a 512-byte segment of each of its
          // 32000 rows per task), and short segments a row apart defeat the hardware prefetchers: ask for the
          // segment kSegmentAheadRows rows ahead.
          if (j + kSegmentAheadRows < J) prefetch_span(b + (j + kSegmentAheadRows) * L + l0, l1 - l0);
          widen_row(panel + (j - j0) * ldp, b + j * L + l0, l1 - l0);
        }
        // The first chunk starts the sums from zero, the last adds them to out (AxpyEnds).
        const AxpyEnds ends{j0 == 0, j1 == J ? out + i0 * L + l0 : nullptr, L};
        axpy_rows(acc, LB, coef + i0 * csi + j0 * csj, csi, csj, panel, ldp, i1 - i0, j1 - j0, l1 - l0, ends);
      }
    }
  });
}

}  // namespace

void matmul_forward(float* out /*(M,N)*/, const float* x /*(M,K)*/, const float* w /*(N,K)*/,
                    const float* bias /*(N) or null*/, int M, int K, int N) {
  forward(out, x, w, bias, M, K, N);
}

void matmul_bf16_forward(float* out /*(M,N)*/, const float* x /*(M,K)*/, const uint16_t* w /*(N,K) bf16*/, int M, int K,
                         int N) {
  forward(out, x, w, nullptr, M, K, N);
}

void matmul_bf16_backward_input(float* dx /*(M,K)*/, const float* dout /*(M,N)*/, const uint16_t* w /*(N,K) bf16*/,
                                int M, int K, int N) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  accumulate_product(dx, dout, /*csi=*/N, /*csj=*/1, w, M, N, K);
}

void matmul_backward(float* dx /*(M,K) or null*/, float* dw /*(N,K) or null*/, float* dbias /*(N) or null*/,
                     const float* dout /*(M,N)*/, const float* x /*(M,K)*/, const float* w /*(N,K)*/, int M, int K,
                     int N) {
  if (M <= 0 || N <= 0 || K < 0) return;
  // dx[m,k] += sum_n dout[m,n] w[n,k]
  if (dx) accumulate_product(dx, dout, /*csi=*/N, /*csj=*/1, w, M, N, K);
  // dw[n,k] += sum_m dout[m,n] x[m,k]
  if (dw) accumulate_product(dw, dout, /*csi=*/1, /*csj=*/N, x, N, M, K);
  // dbias[n] += sum_m dout[m,n], in m order
  if (dbias) {
    parallel_for(N, grain_for(double(M)), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; n++) {
        float s = 0.0f;
        for (int64_t m = 0; m < M; m++) s += dout[m * N + n];
        dbias[n] += s;
      }
    });
  }
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
