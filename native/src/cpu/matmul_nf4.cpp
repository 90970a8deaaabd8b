// NF4 linear layer on the CPU with fused dequantization (docs/reference/linear4bit.md#prefill-and-training-path): out =
// bf16(x) . W_bf16^T where W_bf16 = bf16(storage(NF4[c] * absmax)) is decoded a few rows at a time into a small buffer,
// never whole.
#include <algorithm>
#include <numeric>
#include <cstring>

#include "cache_sizes.h"
#include "dpo/errors.h"
#include "matmul_nf4_gemv.h"
#include "nf4_bf16_dot_switch.h"
#include "nf4_lanes.h"
#include "nf4_tiles_bf16dot.h"
#include "kernel_set.h"
#include "thread_pool.h"
#include "tile_kernels.h"

DPO_DECLARE_OWN_MATMUL_KERNELS()

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {  // one copy per kernel set (kernel_set.h)
namespace {

// Decodes flat elements [e0, e0+len) of W into out (len floats), bf16-valued. Blocks may cross rows
// (docs/reference/nf4.md#blockwise-quantisation).
void decode_bf16(float* out, const Nf4Matrix& w, const float* absmax, int64_t e0, int64_t len) {
  const uint8_t* packed = w.packed.data();
  int64_t e = e0;
  const int64_t e1 = e0 + len;
  while (e < e1) {
    const int64_t b = e / kNf4BlockSize, bend = std::min(e1, (b + 1) * kNf4BlockSize);
    const f32x16 lut_v = block_lut_bf16(absmax[b], w.dtype);
    alignas(64) float lut[16];
    store16(lut, lut_v);
    if (e & 1) *out++ = lut[packed[e >> 1] & 0x0f], e++;  // odd start: low nibble first
    for (; e + 16 <= bend; e += 16, out += 16) store16(out, lookup16(lut_v, packed + (e >> 1)));
    for (; e + 1 < bend; e += 2) {  // whole bytes: even element = high nibble
      const uint8_t byte = packed[e >> 1];
      out[0] = lut[byte >> 4];
      out[1] = lut[byte & 0x0f];
      out += 2;
    }
    if (e < bend) *out++ = lut[packed[e >> 1] >> 4], e++;  // odd end
  }
}

#if defined(__AVX512F__)
// out[0..32) = lut[nibbles of bytes[0..16)] (even element = high nibble), exactly lookup16 twice, with fewer
// instructions: each byte widened once, its two nibbles looked up in two permutes (vpermps reads only the index's low
// 4 bits, so the low nibble needs no mask) and the two results interleaved into element order.
inline void lookup32(float* out, f32x16 lut, const uint8_t* bytes) {
  const __mmask16 all = 0xffff;  // maskz forms: see lookup16
  __m512 t;
  std::memcpy(&t, &lut, sizeof t);
  const __m512i d = _mm512_maskz_cvtepu8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)));
  const __m512 even = _mm512_maskz_permutexvar_ps(all, _mm512_maskz_srli_epi32(all, d, 4), t);
  const __m512 odd = _mm512_maskz_permutexvar_ps(all, d, t);
  const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  _mm512_storeu_ps(out, _mm512_maskz_permutex2var_ps(all, even, first, odd));
  _mm512_storeu_ps(out + 16, _mm512_maskz_permutex2var_ps(all, even, second, odd));
}
#endif

// Whole blocks [b0, b0 + count) of W into out, 64 floats per block: the values decode_bf16 gives (the GEMV's form
// of the block table is the same bits, test nf4_block_table_equals_scalar_rounding). The rows of a matrix with
// K % 64 == 0 are whole blocks back to back, so this loop has none of decode_bf16's edge cases, and the out-of-order
// core overlaps each block's table (a chain of dependent conversions, half of decode_bf16's time) with the lookups
// of its neighbours. The packed bytes stream from memory once: asked for 1 KiB ahead (docs/cpu-kernels.md#tiles).
// With `half` (AVX's split rows, tile_kernels.h SplitRows) the lanes 0-7 of each 16-element group go to out, in group
// order, and lanes 8-15 to out + half.
template <Nf4StorageDType kDType>
void decode_blocks_bf16(float* out, const Nf4Matrix& w, const float* absmax, int64_t b0, int64_t count,
                        [[maybe_unused]] int64_t half) {
  constexpr int64_t kPrefetchBytes = 1024;
  const uint8_t* packed = w.packed.data() + b0 * (kNf4BlockSize / 2);
#if defined(DPO_NF4_BYTE_TABLES)
  // The matrix's cached byte tables where it has them (docs/cpu-kernels.md#byte-tables-for-the-decoded-panels): the
  // same entries as block_lut_bf16_gemv's, looked up by bytes, with no table to build per block.
  if (w.gemv_byte_tables) {
    const uint8_t* tables = w.gemv_byte_tables->data();
    for (int64_t b = b0; b < b0 + count; b++, packed += kNf4BlockSize / 2) {
      __builtin_prefetch(packed + kPrefetchBytes);
      __builtin_prefetch(tables + b * 32 + kPrefetchBytes);
      const Nf4ByteTables t = load_byte_tables(tables + b * 32);
      for (int h = 0; h < 2; h++) {
        // 16-element groups 2h and 2h + 1; split rows put lanes 0-7 in the first half and 8-15 in the second.
        float* const g0 = out + (half ? 2 * h * kPartLanes : 32 * h);
        float* const dst[4] = {g0, half ? g0 + half : g0 + 8, half ? g0 + kPartLanes : g0 + 16,
                               half ? g0 + half + kPartLanes : g0 + 24};
        lookup32_bytes_in_order(dst, t, packed + 16 * h);
      }
      out += half ? kNf4BlockSize / 2 : kNf4BlockSize;
    }
    return;
  }
#endif
  for (int64_t b = b0; b < b0 + count; b++, packed += kNf4BlockSize / 2) {
    __builtin_prefetch(packed + kPrefetchBytes);  // past the matrix's end: a hint that never faults
    const f32x16 lut = block_lut_bf16_gemv(absmax[b], kDType);
#if defined(__AVX512F__)
    for (int h = 0; h < 2; h++) lookup32(out + 32 * h, lut, packed + 16 * h);
    out += kNf4BlockSize;
#else
#if defined(DPO_DOT_TILE_HALVES)
    if (half) {
      for (int q = 0; q < kNf4BlockSize / kLanes; q++) {
        const f32x16 v = lookup16(lut, packed + q * kLanes / 2);
        std::memcpy(out + q * kPartLanes, &v.p[0], sizeof v.p[0]);
        std::memcpy(out + half + q * kPartLanes, &v.p[1], sizeof v.p[1]);
      }
      out += kNf4BlockSize / 2;
      continue;
    }
#endif
    for (int q = 0; q < kNf4BlockSize / kLanes; q++) store16(out + q * kLanes, lookup16(lut, packed + q * kLanes / 2));
    out += kNf4BlockSize;
#endif
  }
}

// decode_blocks_bf16 with the storage dtype a constant, so the table's rounding has no branch per block.
void decode_rows_of_blocks(float* out, const Nf4Matrix& w, const float* absmax, int64_t b0, int64_t count,
                           int64_t half) {
  switch (w.dtype) {
    case Nf4StorageDType::F16: return decode_blocks_bf16<Nf4StorageDType::F16>(out, w, absmax, b0, count, half);
    case Nf4StorageDType::BF16: return decode_blocks_bf16<Nf4StorageDType::BF16>(out, w, absmax, b0, count, half);
    case Nf4StorageDType::F32: return decode_blocks_bf16<Nf4StorageDType::F32>(out, w, absmax, b0, count, half);
  }
}

// dst (rows, ldd) = bf16(src (rows, cols)), columns cols..ldd-1 zeroed (zero padding adds exact zeros to lanes).
// 16 lanes at a time (round_bf16_x16 is the scalar rounding bit for bit, NaN arm included): the scalar loop was
// 1.4-1.6% of a training step (docs/cpu-kernels.md#tiles).
void round_rows_bf16(float* dst, int64_t ldd, const float* src, int64_t rows, int64_t cols) {
  parallel_for(rows, grain_for(double(ldd)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      float* d = dst + r * ldd;
      const float* s = src + r * cols;
      int64_t c = 0;
      for (; c + kLanes <= cols; c += kLanes) store16(d + c, round_bf16_x16(load16(s + c)));
      for (; c < cols; c++) d[c] = round_bf16(s[c]);
      std::fill(d + cols, d + ldd, 0.0f);
    }
  });
}

// Columns [k0, k1) (k1 <= Kp; k0 and k1 - k0 multiples of 64 when K is) of W's rows n0..n1 into rows of ldw floats at
// out, bf16-valued, columns at or past K zeroed. Whole blocks through decode_rows_of_blocks when K is a multiple of 64.
// `split` (AVX only; k1 - k0 a multiple of 16): each row in split form (SplitRows, half = (k1 - k0) / 2).
void decode_row_columns(float* out, int64_t ldw, const Nf4Matrix& w, const float* absmax, int64_t n0, int64_t n1,
                        int64_t k0, int64_t k1, bool split = false) {
  const int64_t K = w.cols;
  const int64_t half = split ? (k1 - k0) / 2 : 0;
  for (int64_t n = n0; n < n1; n++) {
    float* row = out + (n - n0) * ldw;
    if (K % kNf4BlockSize == 0) {
      const int64_t row_blocks = K / kNf4BlockSize;
      decode_rows_of_blocks(row, w, absmax, n * row_blocks + k0 / kNf4BlockSize, (k1 - k0) / kNf4BlockSize, half);
      continue;
    }
    const int64_t len = std::max<int64_t>(0, std::min(K, k1) - k0);
#if defined(DPO_DOT_TILE_HALVES)
    if (split) {  // other shapes (tests, odd hidden sizes): decode plainly, then split
      thread_local std::vector<float> plain_buf;
      float* plain = scratch(plain_buf, size_t(k1 - k0));
      decode_bf16(plain, w, absmax, n * K + k0, len);
      std::fill(plain + len, plain + (k1 - k0), 0.0f);
      split_row(row, plain, k1 - k0);
      continue;
    }
#endif
    decode_bf16(row, w, absmax, n * K + k0, len);
    std::fill(row + len, row + (k1 - k0), 0.0f);
  }
}

// Rows of the NF4 forward's x longer than kLongRow floats are run in chunks of about kRowChunk columns, in tasks of
// at most kChunkedRows x rows (docs/cpu-kernels.md#tiles).
constexpr int64_t kLongRow = 1536, kRowChunk = 1024, kChunkedRows = 192;

// The AVX tiles read the decoded weights in split form (tile_kernels.h SplitRows): every pass over K then uses whole
// cache lines of the weight tile (docs/cpu-kernels.md#split-weight-rows-on-avx2).
#if defined(DPO_DOT_TILE_HALVES)
constexpr bool kSplitRows = true;
#else
constexpr bool kSplitRows = false;
#endif

// Floats of decoded weight rows per task (KC of each row; rows a multiple of kDotNR below). A task runs its MB x rows
// past the NB rows it decoded, so when x spans several row blocks (a training or reference pass) the x of every block
// comes back from L3 once per weight block: larger weight blocks fetch it fewer times. About 2/7 of L2 (585 KiB of
// 2 MiB) ran the training shapes 6-13% faster than 192 KiB on a Xeon with a 2 MiB L2 (docs/cpu-kernels.md#tiles).
// Never below 192 KiB, the size tuned on a 512 KiB L2; x in one row block (a prompt, M <= ~170) keeps it. An L2 above
// 2 MiB counts as 2 MiB, the largest measured: a hypervisor that reports a shared cache as L2 must not get blocks that
// live in L3.
int64_t decoded_block_floats(int64_t row_blocks) {
  constexpr int64_t kTuned = 49152, kLargestMeasuredL2 = int64_t(2) << 20;
  if (row_blocks <= 1) return kTuned;
  const int64_t l2 = std::min(l2_cache_bytes(), kLargestMeasuredL2);
  return std::max(kTuned, l2 / int64_t(sizeof(float)) * 2 / 7);
}

}  // namespace

// One matrix of a tiled matmul_nf4_forward_many: its products, weight-row blocks and first task, and whether it
// runs on the bf16-dot tiles (nf4_tiles_bf16dot.h) or the fp32 ones.
struct TiledNf4 {
  Nf4Product p;
  int64_t N, NB, nblocks, first_task;
  const float* absmax;
  bool words;
};

// The output stays fp32 as ops.h specifies; the reference's cuBLAS GEMM writes bf16
// (docs/reference/linear4bit.md#prefill-and-training-path), a rounding the caller applies if it wants that step too.
// Several matrices against one x (q, k and v; gate and up): bf16(x) once, and one parallel_for over all their tasks,
// so one pool wait instead of one per matrix. Each task is what it is for its matrix alone: the same bits.
void matmul_nf4_forward_many(const Nf4Product* products, int count, const float* x, int M) {
  if (count <= 0 || M <= 0) return;
  const int64_t K = products[0].w->cols, Kp = round_up(K, kLanes);
  for (int i = 0; i < count; i++)
    if (products[i].w->cols != K) fail(ErrorCode::Internal, "matmul_nf4_forward_many: matrices of different K");
  if (K <= 0) {  // empty sums
    for (int i = 0; i < count; i++) {
      const Nf4Product& p = products[i];
      const int64_t N = p.w->rows;
      for (int64_t e = 0; e < int64_t(M) * N; e++) p.out[e] = p.bias ? p.bias[e % N] : 0.0f;
    }
    return;
  }
  // bf16(x) once, rows padded to Kp with zeros; the buffer persists per calling thread (no page faults per call).
  // For the tiled path each row is one cache line longer still (ldx): at K = 768 or 2048 (row strides of 3 or 8 KiB)
  // a tile's 6 x rows otherwise sit in 2 or 1 L1 sets and evict each other (docs/cpu-kernels.md#tiles). The
  // register path reads rows of exactly K (it takes M <= kGemvMaxRows).
  const int64_t ldx = M <= kGemvMaxRows ? Kp : Kp + kLanes;
  thread_local std::vector<float> xb_buf;
  float* xb = scratch(xb_buf, size_t(M * ldx));
  round_rows_bf16(xb, ldx, x, M, K);

  // A task decodes NB weight rows (decoded_block_floats, L2-resident) and runs up to MB x rows against them. Only the
  // split of independent outputs depends on the sizes; every dot is the same dot_tile lane sum over Kp.
  // Long rows (the 0.42B model's down projection, K = 4864) go in chunks of KC columns: the task's x rows over one
  // chunk stay in L2 and a band's in L1, where whole rows of all the x rows (152 x 19 KiB) came from L3 for every 8
  // weight rows; the tiles park their lane sums between chunks (LaneSums, docs/cpu-kernels.md#tiles).
  const int64_t chunks = Kp > kLongRow ? ceil_div(Kp, kRowChunk) : 1;
  const int64_t KC = chunks == 1 ? Kp : round_up(ceil_div(Kp, chunks), kNf4BlockSize);
  const int64_t MB = chunks == 1 ? std::max<int64_t>(kDotMR, (131072 / Kp) / kDotMR * kDotMR)
                                 : round_up(ceil_div(M, ceil_div(M, kChunkedRows)), kDotMR);
  const int64_t mblocks = ceil_div(M, MB);
  std::vector<TiledNf4> tiled;
  std::vector<std::vector<float>> absmax_tmp(static_cast<size_t>(count));
  // x as the bf16-dot tiles' words, packed for the first matrix that takes them (when x is in their exact range).
  const int64_t ldxw = Kp + 32;  // one cache line past the row, for the reason of ldx
  thread_local std::vector<uint16_t> xw_buf;
  uint16_t* xw = nullptr;
  bool x_words_tried = false;
  int64_t tasks = 0;
  double work = 0.0;  // of the smallest task, so that no matrix's tasks go in too large chunks
  for (int i = 0; i < count; i++) {
    const Nf4Product& p = products[i];
    const int64_t N = p.w->rows;
    if (N <= 0 || matmul_nf4_gemv(p.out, xb, *p.w, p.bias, M)) continue;  // a few rows: in registers, same bits
    const int64_t NB = weight_block_rows(N, (decoded_block_floats(mblocks) / KC) / kDotNR * kDotNR, cpu_thread_count());
    bool words = nf4_bf16_dot_tiles_for(*p.w);
    if (words && !x_words_tried) {
      x_words_tried = true;
      uint16_t* buf = scratch(xw_buf, size_t(M * ldxw));
      if (nf4_bf16_dot_pack_x(buf, ldxw, xb, ldx, M, K)) xw = buf;
    }
    words = words && xw;
    if (words) count_nf4_bf16_dot_tile_call();
    tiled.push_back({p, N, NB, ceil_div(N, NB), tasks, nf4_absmax(*p.w, absmax_tmp[size_t(i)]), words});
    tasks += tiled.back().nblocks * mblocks;
    const double w = 2.0 * double(std::min<int64_t>(MB, M)) * double(std::min(NB, N)) * double(K) +
                     4.0 * double(std::min(NB, N)) * double(K);
    work = tiled.size() == 1 ? w : std::min(work, w);
  }
  if (tiled.empty()) return;
  int64_t max_nb = 0;
  for (const TiledNf4& m : tiled) max_nb = std::max(max_nb, m.NB);
  parallel_for(tasks, grain_for(work), [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> buf, park_buf;
    thread_local std::vector<uint16_t> words_buf;
    // Decoded rows one cache line apart beyond KC, for the same reason as ldx (floats, or the bf16-dot words).
    const int64_t ldw = KC + kLanes, ldww = KC + 32;
    float* wb = scratch(buf, size_t(max_nb * ldw));
    uint16_t* wbw = xw ? scratch(words_buf, size_t(max_nb * ldww)) : nullptr;
    float* park = chunks == 1 ? nullptr : scratch(park_buf, size_t(MB * max_nb * kLanes));
    int64_t decoded = -1;  // the first task of the weight block whose rows wb holds
    for (int64_t t = t0; t < t1; t++) {
      size_t j = 0;
      while (j + 1 < tiled.size() && tiled[j + 1].first_task <= t) j++;
      const TiledNf4& m = tiled[j];
      const int64_t NB = m.NB, N = m.N;
      const int64_t nb = (t - m.first_task) / mblocks, mb = (t - m.first_task) % mblocks;
      const int64_t n0 = nb * NB, n1 = std::min(N, n0 + NB);
      const int64_t m0 = mb * MB, m1 = std::min<int64_t>(M, m0 + MB);
      // Consecutive tasks of one weight block (same matrix, same nb, whole rows) share its decoded rows.
      const int64_t block = m.first_task + nb * mblocks;
      for (int64_t k0 = 0; k0 < Kp; k0 += KC) {
        const int64_t k1 = std::min(Kp, k0 + KC);
        const LaneSums ls{park, NB, /*resume=*/k0 > 0, /*finish=*/k1 == Kp};
        if (m.words) {
          if (chunks > 1 || block != decoded) {
            nf4_decode_row_words(wbw, ldww, *m.p.w, m.absmax, n0, n1, k0, k1);
            decoded = block;
          }
          nf4_bf16_dot_rows(m.p.out + m0 * N + n0, N, xw + m0 * ldxw + k0, ldxw, wbw, ldww,
                            m.p.bias ? m.p.bias + n0 : nullptr, m1 - m0, n1 - n0, k1 - k0,
                            chunks == 1 ? LaneSums{} : ls);
          continue;
        }
        if (chunks > 1 || block != decoded) {
          decode_row_columns(wb, ldw, *m.p.w, m.absmax, n0, n1, k0, k1, kSplitRows);
          decoded = block;
        }
#if defined(DPO_DOT_TILE_HALVES)
        const SplitRows wr{wb, (k1 - k0) / 2};
#else
        const float* wr = wb;
#endif
        dot_rows(m.p.out + m0 * N + n0, N, xb + m0 * ldx + k0, ldx, wr, ldw, m.p.bias ? m.p.bias + n0 : nullptr, 0,
                 m1 - m0, 0, n1 - n0, k1 - k0, chunks == 1 ? LaneSums{} : ls);
      }
    }
  });
}

void matmul_nf4_backward_input(float* dx /*(M,K)*/, const float* dout /*(M,N)*/, const Nf4Matrix& w /*(N,K)*/, int M,
                               bool overwrite) {
  const int64_t N = w.rows, K = w.cols;
  if (M <= 0 || K <= 0) return;
  if (N <= 0) {  // an empty sum: 0 where dx is overwritten, dx as it was otherwise
    if (overwrite) std::fill(dx, dx + int64_t(M) * K, 0.0f);
    return;
  }
  std::vector<float> absmax_tmp;
  const float* absmax = nf4_absmax(w, absmax_tmp);
  // bf16(dout) (M,N) in rows of ldb floats, persists per calling thread. The axpy tiles broadcast from IB rows of it
  // at once; with a row stride of a multiple of 4 KiB (N = 2048) those rows all fall in the same few L1 sets and
  // evict each other, so the stride is padded by one cache line.
  const int64_t ldb = round_up(N, kLanes) + kLanes;
  thread_local std::vector<float> db_buf;
  float* db = scratch(db_buf, size_t(M * ldb));
  round_rows_bf16(db, ldb, dout, M, N);
  // The bf16-dot axpy tiles (nf4_tiles_bf16dot.h) where they are exact and the faster choice: bf16(dout) as pairs of
  // n, the decoded rows paired the same way. K % 64 == 0 there, so no column block is ragged.
  const int64_t ldp = N / 2 + kLanes;  // dwords, padded by a cache line for the reason of ldb
  thread_local std::vector<uint32_t> dbp_buf;
  uint32_t* dbp = nullptr;
  if (N % 2 == 0 && nf4_bf16_dot_tiles_for(w)) {
    uint32_t* buf = scratch(dbp_buf, size_t(M * ldp));
    if (nf4_bf16_dot_pack_pairs(buf, ldp, db, ldb, M, N)) dbp = buf;
  }
  if (dbp) count_nf4_bf16_dot_tile_call();

  // Tasks own (IB rows of dx) x (LB columns of dx). Each decodes W[:, its columns] JB rows at a time and sums
  // bf16(dout[m,n]) * W[n,k] for n = 0..N-1 in order from zero, then dx += the sum: the same sequence for every
  // element whatever the split. JB = 128 (a 128 x 64-column stripe of the panel, 32 KiB, is what a tile walks)
  // loads and stores each tile's sums half as often as 64 did: 3-5% on the 134M training shapes, AVX-512 and AVX2
  // kernels alike (docs/cpu-kernels.md#gradient-products).
  const int64_t IB = backward_row_block(M), JB = 128;
  const int64_t iblocks = ceil_div(M, IB);
  // Column blocks of whole NF4 blocks where the rows are whole blocks, so that the panel decodes block by block.
  const int64_t align = K % kNf4BlockSize == 0 ? std::lcm(int64_t(kNf4BlockSize), int64_t(kAxpyCols)) : kAxpyCols;
  const int64_t LB = backward_column_block(K, iblocks, cpu_thread_count(), align);
  const int64_t lblocks = ceil_div(K, LB);
  const double work = 2.0 * double(std::min<int64_t>(IB, M)) * double(std::min(LB, K)) * double(N);
  parallel_for(iblocks * lblocks, grain_for(work), [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> acc_buf, w_buf;
    thread_local std::vector<uint32_t> pairs_buf;
    float* acc = scratch(acc_buf, size_t(IB * LB));
    // Decoded rows one cache line apart beyond their length: at 256 columns (1 KiB) the JB rows an axpy tile walks
    // down would share a quarter of the L1 sets.
    float* wb = scratch(w_buf, size_t(JB * (LB + kLanes)));
    uint32_t* wp = dbp ? scratch(pairs_buf, size_t(JB / 2 * (LB + kLanes))) : nullptr;
    for (int64_t t = t0; t < t1; t++) {
      const int64_t i0 = (t / lblocks) * IB, i1 = std::min<int64_t>(M, i0 + IB);
      const int64_t l0 = (t % lblocks) * LB, l1 = std::min(K, l0 + LB);
      const int64_t L = l1 - l0, Lp = round_up(L, kLanes), ldw = Lp + kLanes;
      // The sums start from zero in the first chunk of W's rows and the last adds them to dx (AxpyEnds), unless
      // the block's columns run past K (padded to 16): then they go through acc and only columns < K are added.
      const bool ragged = Lp != L;
      for (int64_t j0 = 0; j0 < N; j0 += JB) {
        const int64_t j1 = std::min(N, j0 + JB);
        // Columns [l0, l0 + Lp): whole NF4 blocks when K % 64 == 0 (the column blocks are aligned to them above),
        // otherwise the general decoder and zeros past the row's end.
        decode_row_columns(wb, ldw, w, absmax, j0, j1, l0, l0 + Lp);
        const AxpyEnds ends{j0 == 0, j1 == N && !ragged ? dx + i0 * K + l0 : nullptr, K, overwrite};
        if (dbp) {
          nf4_pair_rows(wp, ldw, wb, ldw, (j1 - j0) / 2, Lp);
          nf4_bf16_dot_axpy_rows(acc, Lp, dbp + i0 * ldp + j0 / 2, ldp, wp, ldw, i1 - i0, (j1 - j0) / 2, Lp, ends);
          continue;
        }
        axpy_rows(acc, Lp, db + i0 * ldb + j0, /*csi=*/ldb, /*csj=*/1, wb, ldw, i1 - i0, j1 - j0, Lp, ends);
      }
      if (!ragged) continue;
      for (int64_t i = i0; i < i1; i++) {
        float* o = dx + i * K;
        const float* a = acc + (i - i0) * Lp;
        for (int64_t l = l0; l < l1; l++) o[l] = (overwrite ? 0.0f : o[l]) + a[l - l0];
      }
    }
  });
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
