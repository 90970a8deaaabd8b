// The NF4 linear layer for a few rows (decode: M = 1 .. kGemvMaxRows): each weight is decoded in registers from its
// nibble and its block's double-quantized absmax (or, with the fp16 table by float adds, its fp32 absmax cache) and
// used at once, never written to a buffer, so the pass streams the 0.52-0.56 bytes per weight of the matrix and little
// else. Every output is the same lane sum as dot_tile's (docs/cpu-kernels.md), so a row gives the same bits here, in
// the tiled path and inside any batch.
#include <algorithm>
#include <memory>
#include <new>

#include "matmul_nf4_gemv.h"
#include "nf4_bf16_dot_switch.h"
#include "nf4_gemv_table_budget.h"
#include "nf4_lanes.h"
#include "kernel_set.h"
#include "thread_pool.h"

DPO_DECLARE_OWN_MATMUL_KERNELS()

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {
namespace {

// Weight rows decoded together: their tables and accumulators must stay in registers (32 zmm; 16 ymm hold 8 f32x16).
#if defined(__AVX512F__)
constexpr int kRowsSmallM = 4, kRowsLargeM = 2;
#else
constexpr int kRowsSmallM = 2, kRowsLargeM = 1;
#endif

// How the GEMV orders x, and where each accumulator lane's k % 16 class sits: AVX2 decodes 32 weights at a time by
// byte tables (kByteGroupElement), the others 16 at a time (kPackedLaneElement).
#if defined(DPO_NF4_BYTE_TABLES)
constexpr int kXGroup = 32;
constexpr const int* kXGroupElement = kByteGroupElement;
#else
constexpr int kXGroup = kLanes;
constexpr const int* kXGroupElement = kPackedLaneElement;
#endif

// reduce16 of an accumulator whose lane p sums class kXGroupElement[p], with the lanes in k order: the same pairs
// added in the same order, so the same bits. On AVX2 the pairs are added where they sit, without the round trip
// through memory that put the lanes in order first (docs/cpu-kernels.md#the-avx2-gemvs-last-reduction).
inline float reduce16_in_k_order(f32x16 acc) {
#if defined(DPO_NF4_BYTE_TABLES)
  // Position p holds class 4 (p % 4) + p / 4, so reduce16's pairs sit at fixed positions: classes (l, l + 8) at
  // (p, p + 2) within each 4-lane chunk, (l, l + 4) at (4a, 4a + 1), (l, l + 2) at (4a, 4a + 8), (0, 1) at (0, 4).
  static_assert([] {
    for (int p = 0; p < kLanes; p++)
      if (kByteGroupElement[p] != 4 * (p % 4) + p / 4) return false;
    return true;
  }());
  __m256 lo, hi;  // positions 0-7, 8-15
  std::memcpy(&lo, &acc.p[0], sizeof lo);
  std::memcpy(&hi, &acc.p[1], sizeof hi);
  lo = _mm256_add_ps(lo, _mm256_permute_ps(lo, 0x4e)), hi = _mm256_add_ps(hi, _mm256_permute_ps(hi, 0x4e));
  lo = _mm256_add_ps(lo, _mm256_permute_ps(lo, 0xb1)), hi = _mm256_add_ps(hi, _mm256_permute_ps(hi, 0xb1));
  const __m256 s2 = _mm256_add_ps(lo, hi);  // lane 0: classes 0 + 2, lane 4: classes 1 + 3
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(s2), _mm256_extractf128_ps(s2, 1)));
#else
  float lanes[kLanes], in_order[kLanes];
  store16(lanes, acc);
  for (int p = 0; p < kLanes; p++) in_order[kXGroupElement[p]] = lanes[p];
  return reduce16(load16(in_order));
#endif
}

// out[m*ldo + r] = sum_k x[m, k] * W[n + r, k] (+ bias[r]) for m < MT, r < R; K % 64 == 0; xp holds x with each
// kXGroup-element group in kXGroupElement order. Each lane adds its k % 16 class in increasing k (one FMA each); the
// lanes are put back in k order and summed by reduce16: dot_tile's arithmetic exactly.
// kFastTable: where each block's table comes from other than its double-quantized absmax: with AVX-512 the fp32
// absmax cache and fp16 rounding by float adds (nf4_fp16_table_usable), with AVX2 the cached byte tables
// (w.gemv_byte_tables). The same entries either way.
template <int MT, int R, bool kFastTable>
void gemv_tile(float* out, int64_t ldo, const float* xp, int64_t K, const Nf4Matrix& w, const float* code8, int64_t n,
               const float* bias) {
  f32x16 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = f32x16{};
  const int64_t blocks_per_row = K / kNf4BlockSize;
  const int64_t ahead = gemv_prefetch_bytes(K, R);
  [[maybe_unused]]
  const int64_t ahead_blocks = gemv_prefetch_blocks(K, R);  // the absmax cache's stream (AVX-512)
  const GemvRowStarts<R> rows(w, n);
  const uint8_t* const* row_bytes = rows.bytes;
  const uint64_t* row_block = rows.block;
  for (int64_t j = 0; j < blocks_per_row; j++) {
    const float* xj = xp + j * kNf4BlockSize;
    const int64_t byte0 = j * (kNf4BlockSize / 2);
    for (int r = 0; r < R; r++) __builtin_prefetch(row_bytes[r] + byte0 + ahead);
#if defined(DPO_NF4_BYTE_TABLES)
    Nf4ByteTables tables[R];
    if constexpr (kFastTable) {
      for (int r = 0; r < R; r++) {
        const uint8_t* t = w.gemv_byte_tables->data() + (row_block[r] + j) * 32;
        __builtin_prefetch(t + ahead);  // a second stream per row, as long as its packed bytes: +3-5%
        tables[r] = load_byte_tables(t);
      }
    } else {
      for (int r = 0; r < R; r++)
        tables[r] = block_byte_tables(block_lut_bf16_gemv(block_absmax(w, code8, row_block[r] + j), w.dtype));
    }
    for (int c = 0; c < kNf4BlockSize / kXGroup; c++) {
      for (int r = 0; r < R; r++) {
        f32x16 w_first, w_second;  // group elements 0-15 and 16-31: each lane's class twice, in increasing k
        lookup32_bytes(w_first, w_second, tables[r], row_bytes[r] + byte0 + c * (kXGroup / 2));
        for (int m = 0; m < MT; m++) acc[r][m] += load16(xj + m * K + c * kXGroup) * w_first;
        for (int m = 0; m < MT; m++) acc[r][m] += load16(xj + m * K + c * kXGroup + kLanes) * w_second;
      }
    }
#else
    f32x16 lut[R];
#if defined(__AVX512F__)
    if constexpr (kFastTable) {
      for (int r = 0; r < R; r++) {
        __builtin_prefetch(w.absmax.data() + row_block[r] + j + ahead_blocks);
        lut[r] = block_lut_bf16_fp16_normal(w.absmax[row_block[r] + j]);
      }
    } else
#endif
      for (int r = 0; r < R; r++) lut[r] = block_lut_bf16_gemv(block_absmax(w, code8, row_block[r] + j), w.dtype);
    for (int c = 0; c < kNf4BlockSize / kLanes; c++) {
      f32x16 xv[MT];
      for (int m = 0; m < MT; m++) xv[m] = load16(xj + m * K + c * kLanes);
      for (int r = 0; r < R; r++) {
        const f32x16 wv = lookup16_packed_order(lut[r], row_bytes[r] + byte0 + c * (kLanes / 2));
        for (int m = 0; m < MT; m++) acc[r][m] += xv[m] * wv;
      }
    }
#endif
  }
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) {
      const float s = reduce16_in_k_order(acc[r][m]);
      out[m * ldo + r] = bias ? s + bias[r] : s;
    }
}

// Rows [n0, n1) of the output for x rows [m0, m0 + MT).
template <int MT, bool kFastTable>
void gemv_rows(float* out, int64_t N, const float* xp, int64_t K, const Nf4Matrix& w, const float* code8,
               const float* bias, int64_t n0, int64_t n1) {
  constexpr int R = MT <= 2 ? kRowsSmallM : kRowsLargeM;
  int64_t n = n0;
  for (; n + R <= n1; n += R) gemv_tile<MT, R, kFastTable>(out + n, N, xp, K, w, code8, n, bias ? bias + n : nullptr);
  for (; n < n1; n++) gemv_tile<MT, 1, kFastTable>(out + n, N, xp, K, w, code8, n, bias ? bias + n : nullptr);
}

// gemv_rows for a pass of mt x rows.
template <bool kFastTable>
void gemv_pass(int mt, float* out, int64_t N, const float* xp, int64_t K, const Nf4Matrix& w, const float* code8,
               const float* bias, int64_t n0, int64_t n1) {
  if (mt == 1) gemv_rows<1, kFastTable>(out, N, xp, K, w, code8, bias, n0, n1);
  else if (mt == 2) gemv_rows<2, kFastTable>(out, N, xp, K, w, code8, bias, n0, n1);
  else if (mt == 3) gemv_rows<3, kFastTable>(out, N, xp, K, w, code8, bias, n0, n1);
  else gemv_rows<4, kFastTable>(out, N, xp, K, w, code8, bias, n0, n1);
}

}  // namespace

bool nf4_fp16_table_usable(const Nf4Matrix& w) {
#if defined(__AVX512F__)
  return w.fp16_table_normal && int64_t(w.absmax.size()) == w.blocks() && nf4_fp16_table_allowed();
#else
  return false;
#endif
}

void matmul_nf4_prepare([[maybe_unused]] const Nf4Matrix& w) {
#if defined(DPO_NF4_BYTE_TABLES)
  // Each block's byte tables built once, as the GEMV would build them, if the matrix takes the GEMV (K % 64 == 0)
  // and they fit the budget (docs/cpu-kernels.md#cached-byte-tables-on-avx2).
  if (w.gemv_byte_tables || w.cols % kNf4BlockSize != 0 || w.numel() == 0) return;
  const int64_t blocks = w.blocks(), bytes = blocks * 32;
  if (!reserve_nf4_gemv_tables(bytes)) return;
  const float* code8 = w.nested_code.empty() ? dynamic_map_signed() : w.nested_code.data();
  std::unique_ptr<std::vector<uint8_t>> t;
  try {
    t = std::make_unique<std::vector<uint8_t>>(size_t(bytes));
  } catch (const std::bad_alloc&) {  // a cache: without it the GEMV builds each table as before
    release_nf4_gemv_tables(bytes);
    return;
  }
  parallel_for(blocks, grain_for(100.0), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++)
      store_byte_tables(t->data() + b * 32,
                        block_byte_tables(block_lut_bf16_gemv(block_absmax(w, code8, uint64_t(b)), w.dtype)));
  });
  w.gemv_byte_tables = std::shared_ptr<const std::vector<uint8_t>>(t.release(), [bytes](const std::vector<uint8_t>* p) {
    delete p;
    release_nf4_gemv_tables(bytes);
  });
#endif
}

bool matmul_nf4_gemv(float* out /*(M,N)*/, const float* xb /*(M,K) bf16-valued*/, const Nf4Matrix& w /*(N,K)*/,
                     const float* bias /*(N) or null*/, int M) {
  if (M < 1 || M > kGemvMaxRows || w.cols % kNf4BlockSize != 0 || w.cols == 0) return false;
  // The FMA path with the fp16 table by float adds is faster than the bf16-dot path at every M where vdpbf16ps runs
  // at a quarter of the FMA rate (docs/cpu-kernels.md#the-fp16-table-by-float-adds), slower where it runs at the
  // FMA rate (#bf16-dot-tiles).
  const bool fma_first = nf4_fp16_table_usable(w) && !nf4_bf16_dot_preferred();
  if (fma_first || !matmul_nf4_gemv_bf16dot(out, xb, w, bias, M)) matmul_nf4_gemv_fma(out, xb, w, bias, M);
  return true;
}

void matmul_nf4_gemv_fma(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M) {
  const int64_t N = w.rows, K = w.cols;
  const float* code8 = w.nested_code.empty() ? dynamic_map_signed() : w.nested_code.data();
#if defined(DPO_NF4_BYTE_TABLES)
  const bool fast_table = w.gemv_byte_tables != nullptr;
#else
  const bool fast_table = nf4_fp16_table_usable(w);
#endif
  thread_local std::vector<float> xp_buf;  // x in the register path's lane order, per calling thread
  float* xp = scratch(xp_buf, size_t(M * K));
  for (int64_t c = 0; c < int64_t(M) * K; c += kXGroup)
    for (int p = 0; p < kXGroup; p++) xp[c + p] = xb[c + kXGroupElement[p]];
  for_each_gemv_task(N, M, K, [&](int mt, int64_t m0, int64_t n0, int64_t n1) {
    float* o = out + m0 * N;
    const float* x = xp + m0 * K;
    if (fast_table) gemv_pass<true>(mt, o, N, x, K, w, code8, bias, n0, n1);
    else gemv_pass<false>(mt, o, N, x, K, w, code8, bias, n0, n1);
  });
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
