// The bf16-dot NF4 GEMV (src/cpu/nf4_gemv_bf16dot.cpp, docs/cpu-kernels.md#the-bf16-dot-gemv): the same bits as the
// FMA path for every decode shape, storage dtype and bias; its guards hand inputs outside its exact range (tiny or
// huge scales, tiny / infinite / NaN x) to the FMA path; its start-up probe passes on a CPU that has the instruction.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "op_checks.h"
#include "random_data.h"
#include "core/half.h"
#include "cpu/matmul_nf4_gemv.h"
#include "cpu/nf4_bf16_dot_switch.h"
#include "cpu/ops.h"
#include "quant/nf4.h"

using namespace dpo;
using namespace dpo_test;
using std::vector;

namespace {

// out = x . W^T (+ bias) through ops.h, with the bf16-dot path allowed or not.
// (The fp16 table by float adds, which takes one-row fp16 calls from the bf16-dot path, stays off here so that
// every call below reaches the path under test; test_nf4_fp16_table covers it.)
vector<float> nf4_forward(bool bf16_dot, const vector<float>& x, const Nf4Matrix& w, const float* bias, int M) {
  cpu::set_nf4_bf16_dot_allowed(bf16_dot);
  cpu::set_nf4_fp16_table_allowed(false);
  vector<float> out(size_t(M) * size_t(w.rows), NAN);
  cpu::matmul_nf4_forward(out.data(), x.data(), w, bias, M);
  cpu::set_nf4_bf16_dot_allowed(true);
  cpu::set_nf4_fp16_table_allowed(true);
  return out;
}

bool cpu_has_bf16_dot() {
#if defined(__x86_64__) && defined(__AVX512F__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

bool runs_bf16_dot() { return cpu_has_bf16_dot() && std::string(cpu::matmul_kernel_set()) == "avx512"; }

Nf4Matrix quantized(int N, int K, float sigma, Nf4StorageDType dt, uint32_t seed) {
  auto wf = randn(size_t(N) * K, sigma, seed);
  if (dt == Nf4StorageDType::F16)
    for (auto& v : wf) v = round_fp16(v);
  return nf4_quantize(wf.data(), N, K, dt);
}

}  // namespace

TEST_CASE(probe_passes_where_the_cpu_has_the_instruction) {
  // This CPU's vdpbf16ps must match the FMA path; a failed probe would silently cost the speed-up.
  CHECK(cpu::nf4_bf16_dot_usable() == cpu_has_bf16_dot());
}

TEST_CASE(bf16_dot_equals_fma_path_bit_for_bit) {
  const int shapes[][2] = {{64, 1}, {128, 37}, {192, 5}, {896, 96}, {1024, 19}};
  uint32_t seed = 7100;
  const uint64_t calls0 = cpu::nf4_bf16_dot_calls();
  int64_t compared = 0;
  for (auto& s : shapes) {
    const int K = s[0], N = s[1];
    for (float sigma : {0.05f, 3e-6f}) {
      for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
        const Nf4Matrix w = quantized(N, K, sigma, dt, seed++);
        CHECK(w.bf16_dot_exact);
        const auto x = randu(size_t(8) * K, -40, 40, seed++), bias = randu(size_t(N), -1, 1, seed++);
        for (int M = 1; M <= cpu::kGemvMaxRows; M++)
          for (const float* b : {bias.data(), static_cast<const float*>(nullptr)}) {
            const vector<float> xm(x.begin(), x.begin() + size_t(M) * K);
            CHECK(same_bits(nf4_forward(true, xm, w, b, M), nf4_forward(false, xm, w, b, M)));
            compared++;
          }
      }
    }
  }
  if (runs_bf16_dot()) CHECK(cpu::nf4_bf16_dot_calls() - calls0 == uint64_t(compared));
}

TEST_CASE(prefetch_distance_is_a_later_tile) {
  // Both register paths prefetch each row the same column of a later tile (docs/cpu-kernels.md#prefetch-a-later-tile):
  // a whole number of tile spans, at least kRowPrefetchBytes, and the first such.
  for (int R : {1, 2, 4})
    for (int64_t K = 64; K <= 16384; K += 64) {
      const int64_t span = R * K / 2, d = cpu::gemv_prefetch_bytes(K, R);
      CHECK(d % span == 0);
      CHECK(d >= cpu::kRowPrefetchBytes);
      CHECK(d - span < cpu::kRowPrefetchBytes);
      CHECK(cpu::gemv_prefetch_blocks(K, R) * (kNf4BlockSize / 2) == d);
    }
  CHECK(cpu::gemv_prefetch_bytes(4864, 4) == 9728);  // the down projection at 0.42B: the next tile, not row r + 1.7
  CHECK(cpu::gemv_prefetch_bytes(896, 4) == 3 * 1792);
  CHECK(cpu::gemv_prefetch_bytes(0, 4) == cpu::kRowPrefetchBytes);  // an empty row never divides by zero
}

TEST_CASE(matrix_scale_range_guard) {
  const float lo = std::ldexp(1.0f, -46), hi = std::ldexp(1.0f, 15), inf = std::numeric_limits<float>::infinity();
  const auto in_range = [](float a) { return nf4_scales_in_bf16_dot_range(&a, 1); };
  CHECK(in_range(0.0f) && in_range(-0.0f) && in_range(lo) && in_range(-lo) && in_range(hi) && in_range(1.0f));
  CHECK(!in_range(std::nextafter(lo, 0.0f)) && !in_range(std::nextafter(hi, inf)) && !in_range(inf));
  CHECK(!in_range(-inf) && !in_range(std::numeric_limits<float>::quiet_NaN()) && !in_range(1e-30f));
  CHECK(!in_range(-std::numeric_limits<float>::quiet_NaN()) && !in_range(std::numeric_limits<float>::denorm_min()));
  CHECK(!in_range(-std::numeric_limits<float>::max()) && in_range(-hi));
  // A long run (the vectorised loop and its tail) with one value out of range at each end and in the middle.
  vector<float> run(1000, 0.5f);
  CHECK(nf4_scales_in_bf16_dot_range(run.data(), int64_t(run.size())));
  for (size_t at : {size_t(0), size_t(517), run.size() - 1}) {
    run[at] = 1e-30f;
    CHECK(!nf4_scales_in_bf16_dot_range(run.data(), int64_t(run.size())));
    run[at] = 0.5f;
  }
  // Tiny and huge scales (double quantization puts every block near the mean, so the whole matrix is scaled): the
  // matrix takes the FMA path, same bits.
  const int N = 6, K = 128;
  for (float odd : {1e-16f, 1e6f}) {
    auto wf = randn(size_t(N) * K, 0.05f, 7300);
    for (auto& v : wf) v *= odd;
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K, Nf4StorageDType::F32);
    CHECK(!w.bf16_dot_exact);
    const auto x = randu(size_t(K), -2, 2, 7301);
    const uint64_t calls0 = cpu::nf4_bf16_dot_calls();
    CHECK(same_bits(nf4_forward(true, x, w, nullptr, 1), nf4_forward(false, x, w, nullptr, 1)));
    CHECK(cpu::nf4_bf16_dot_calls() == calls0);
  }
  // A hand-built matrix has no range flag: FMA path.
  CHECK(!Nf4Matrix{}.bf16_dot_exact);
}

TEST_CASE(input_range_guard) {
  // x with a value whose products could be subnormal, or inf / NaN / a huge value: the call falls back (the products
  // of 1e-20 would sit below fp32's normal range, where vdpbf16ps flushes to zero and the FMA does not).
  const int N = 9, K = 64;
  const Nf4Matrix w = quantized(N, K, 0.05f, Nf4StorageDType::BF16, 7400);
  const float inf = std::numeric_limits<float>::infinity();
  const vector<float> bias = randu(size_t(N), -1, 1, 7401);
  for (float odd : {1e-20f, -3e-16f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 3e19f}) {
    auto x = randu(size_t(2) * K, -2, 2, 7402);
    x[size_t(K + 17)] = odd;
    vector<float> xb(x.size());
    for (size_t i = 0; i < x.size(); i++) xb[i] = round_bf16(x[i]);
    vector<float> out(size_t(2) * N);
    CHECK(!cpu::matmul_nf4_gemv_bf16dot(out.data(), xb.data(), w, bias.data(), 2));
    CHECK(same_bits(nf4_forward(true, x, w, bias.data(), 2), nf4_forward(false, x, w, bias.data(), 2)));
  }
  // The edges of the range, and zeros of both signs, stay on the bf16-dot path and give the FMA path's bits.
  auto x = randu(size_t(K), -2, 2, 7403);
  for (auto& v : x) v = round_bf16(v);
  x[0] = std::ldexp(1.0f, -50), x[1] = -std::ldexp(1.0f, 60), x[2] = 0.0f, x[3] = -0.0f;
  vector<float> out(static_cast<size_t>(N)), ref(static_cast<size_t>(N));
  CHECK(cpu::matmul_nf4_gemv_bf16dot(out.data(), x.data(), w, nullptr, 1) == runs_bf16_dot());
  cpu::matmul_nf4_gemv_fma(ref.data(), x.data(), w, nullptr, 1);
  if (runs_bf16_dot()) CHECK(same_bits(out, ref));
}

TEST_MAIN()
