// The NF4 decode GEMV on AVX512-BF16 (docs/cpu-kernels.md#the-bf16-dot-gemv): one vdpbf16ps does two of a lane's
// FMAs, in the lane's own k order and with the same roundings, so the result is the FMA path's (gemv_tile) bit for
// bit with fewer instructions per weight (table lookups for 32 weights at a time). Compiled in every kernel set; only
// the AVX-512 one has the kernel (behind a CPU check and a start-up probe), the others decline every call.
#include <algorithm>
#include <cmath>
#include <random>

#include "bf16_dot_words.h"
#include "kernel_set.h"
#include "matmul_nf4_gemv.h"
#include "nf4_bf16_dot_switch.h"
#include "nf4_lanes.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

#if defined(DPO_HAVE_BF16_DOT_WORDS)
namespace {

// out[m*ldo + r] = sum_k x[m, k] * W[n + r, k] (+ bias[r]): gemv_tile's arithmetic, two FMAs per vdpbf16ps.
template <int MT, int R>
DPO_BF16_DOT_TARGET void dot_tile(float* out, int64_t ldo, const uint16_t* xw, int64_t K, const Nf4Matrix& w,
                                  const float* absmax, int64_t n, const float* bias, const NibbleSelect& sel) {
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  const int64_t blocks_per_row = K / kNf4BlockSize;
  const int64_t ahead = gemv_prefetch_bytes(K, R), ahead_blocks = gemv_prefetch_blocks(K, R);
  const WordTable kind = word_table_for(w);  // read once: the loop's tables branch on it
  const GemvRowStarts<R> rows(w, n);
  const uint8_t* const* row_bytes = rows.bytes;
  const uint64_t* row_block = rows.block;
  for (int64_t j = 0; j < blocks_per_row; j++) {
    const int64_t byte0 = j * (kNf4BlockSize / 2);
    for (int r = 0; r < R; r++) {
      __builtin_prefetch(row_bytes[r] + byte0 + ahead);
      __builtin_prefetch(absmax + row_block[r] + j + ahead_blocks);  // a line per 16 blocks: mostly hits
    }
    __m512i table[R];
    for (int r = 0; r < R; r++) table[r] = block_table_words(absmax + row_block[r] + j, kind);
    __m512bh xv[MT][2];
    for (int m = 0; m < MT; m++)
      for (int half = 0; half < 2; half++) {
        const __m512i v = _mm512_loadu_si512(xw + m * K + j * kNf4BlockSize + half * 32);
        std::memcpy(&xv[m][half], &v, sizeof v);
      }
    for (int r = 0; r < R; r++) {
      const BlockWords words = block_words(row_bytes[r] + byte0, table[r], sel);
      for (int half = 0; half < 2; half++) {
        const __m512bh wv = as_bf16_words(words.group[half]);
        for (int m = 0; m < MT; m++) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], wv, xv[m][half]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) {
      f32x16 lanes;  // lane L is class L: already in k order
      std::memcpy(&lanes, &acc[r][m], sizeof lanes);
      const float s = reduce16(lanes);
      out[m * ldo + r] = bias ? s + bias[r] : s;
    }
}

template <int MT>
DPO_BF16_DOT_TARGET void dot_rows(float* out, int64_t N, const uint16_t* xw, int64_t K, const Nf4Matrix& w,
                                  const float* absmax, const float* bias, int64_t n0, int64_t n1,
                                  const NibbleSelect& sel) {
  constexpr int R = MT <= 2 ? 4 : 2;  // accumulators, tables and x words stay within the 32 zmm registers
  int64_t n = n0;
  for (; n + R <= n1; n += R) dot_tile<MT, R>(out + n, N, xw, K, w, absmax, n, bias ? bias + n : nullptr, sel);
  for (; n < n1; n++) dot_tile<MT, 1>(out + n, N, xw, K, w, absmax, n, bias ? bias + n : nullptr, sel);
}

void run(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M) {
  static const NibbleSelect sel = nibble_select();
  const int64_t N = w.rows, K = w.cols;
  const float* absmax = w.absmax.data();  // the dequantized cache (checked present by the caller)
  thread_local std::vector<uint16_t> xw_buf;  // x in the dot order, per calling thread
  uint16_t* xw = scratch(xw_buf, size_t(M * K));
  pack_words(xw, K, xb, K, M, K);
  for_each_gemv_task(N, M, K, [&](int mt, int64_t m0, int64_t n0, int64_t n1) {
    float* o = out + m0 * N;
    const uint16_t* x = xw + m0 * K;
    if (mt == 1) dot_rows<1>(o, N, x, K, w, absmax, bias, n0, n1, sel);
    else if (mt == 2) dot_rows<2>(o, N, x, K, w, absmax, bias, n0, n1, sel);
    else if (mt == 3) dot_rows<3>(o, N, x, K, w, absmax, bias, n0, n1, sel);
    else dot_rows<4>(o, N, x, K, w, absmax, bias, n0, n1, sel);
  });
}

// The start-up probe: random matrices of each storage dtype, M = 1 .. kGemvPassRows + 1 rows, through both paths; any
// bit that differs (another vendor's vdpbf16ps rounding otherwise) turns the bf16-dot path off for the process.
bool probe_matches_fma_path() {
  std::mt19937 rng(20261202);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t N = 21, K = 192, Mmax = kGemvPassRows + 1;
  for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
    std::vector<float> wf(size_t(N * K)), x(size_t(Mmax * K)), bias(static_cast<size_t>(N));
    for (float& v : wf) v = normal(rng) * 0.05f;
    for (float& v : wf) v = dt == Nf4StorageDType::F16 ? round_fp16(v) : v;
    for (float& v : x) v = round_bf16(normal(rng) * 3.0f);
    for (float& v : bias) v = normal(rng);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K, dt);
    if (!w.bf16_dot_exact) return false;
    for (int M = 1; M <= Mmax; M++) {
      std::vector<float> a(size_t(M * N)), b(size_t(M * N));
      run(a.data(), x.data(), w, bias.data(), M);
      matmul_nf4_gemv_fma(b.data(), x.data(), w, bias.data(), M);
      if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) return false;
    }
  }
  return true;
}

bool cpu_has_bf16_dot() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vbmi");
}

}  // namespace

bool nf4_bf16_dot_usable() {
  static const bool usable = cpu_has_bf16_dot() && probe_matches_fma_path();
  return usable;
}

bool matmul_nf4_gemv_bf16dot(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M) {
  if (!w.bf16_dot_exact || int64_t(w.absmax.size()) != w.blocks() || !nf4_bf16_dot_allowed() || !nf4_bf16_dot_usable())
    return false;
  if (!bf16_dot_x_in_range(xb, int64_t(M) * w.cols)) return false;
  run(out, xb, w, bias, M);
  count_nf4_bf16_dot_call();
  return true;
}
#else
bool nf4_bf16_dot_usable() { return false; }
bool matmul_nf4_gemv_bf16dot(float*, const float*, const Nf4Matrix&, const float*, int) { return false; }
#endif

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
