// The NF4 GEMV's fp16 table by float adds (nf4_lanes.h block_lut_bf16_fp16_normal and the bf16-dot kernels' fp16-only
// block_lut_fp16_normal, docs/cpu-kernels.md#the-fp16-table-by-float-adds): the same table bits as the conversions for
// every scale of its range, the range flag's edges, and the same matmul bits as the plain FMA path and the bf16-dot
// path for every decode shape, storage dtype and bias, with scales at the range's edges and just outside it.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "op_checks.h"
#include "random_data.h"
#include "core/half.h"
#include "cpu/matmul_nf4_gemv.h"
#include "cpu/nf4_bf16_dot_switch.h"
#include "cpu/nf4_lanes.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "quant/nf4.h"

using namespace dpo;
using namespace dpo_test;
using std::vector;

namespace {

// The four ways a call can go: the FMA path with the fp16 table by adds (when the matrix allows it), the bf16-dot
// path with the converted table, the bf16-dot path with the table by adds (where the bf16-dot kernels are preferred,
// docs/cpu-kernels.md#bf16-dot-tiles), the plain FMA path with the converted table.
enum class Path { Fp16Table, Bf16Dot, Bf16DotFp16Table, PlainFma };

vector<float> nf4_forward(Path path, const vector<float>& x, const Nf4Matrix& w, const float* bias, int M) {
  cpu::set_nf4_fp16_table_allowed(path == Path::Fp16Table || path == Path::Bf16DotFp16Table);
  cpu::set_nf4_bf16_dot_allowed(path == Path::Bf16Dot || path == Path::Bf16DotFp16Table);
  cpu::set_nf4_bf16_dot_preference(path == Path::Bf16DotFp16Table ? 1 : 0);
  vector<float> out(size_t(M) * size_t(w.rows), NAN);
  cpu::matmul_nf4_forward(out.data(), x.data(), w, bias, M);
  cpu::set_nf4_fp16_table_allowed(true);
  cpu::set_nf4_bf16_dot_allowed(true);
  cpu::set_nf4_bf16_dot_preference(-1);
  return out;
}

// Every path gives the same bits for M = 1 .. kGemvMaxRows, with and without bias; returns the calls compared.
int check_paths_agree(const Nf4Matrix& w, uint32_t seed) {
  const int64_t K = w.cols, N = w.rows;
  const auto x = randu(size_t(cpu::kGemvMaxRows) * size_t(K), -40, 40, seed), bias = randu(size_t(N), -1, 1, seed + 1);
  int compared = 0;
  for (int M = 1; M <= cpu::kGemvMaxRows; M++)
    for (const float* b : {bias.data(), static_cast<const float*>(nullptr)}) {
      const vector<float> xm(x.begin(), x.begin() + M * K);
      const vector<float> plain = nf4_forward(Path::PlainFma, xm, w, b, M);
      CHECK(same_bits(nf4_forward(Path::Fp16Table, xm, w, b, M), plain));
      CHECK(same_bits(nf4_forward(Path::Bf16Dot, xm, w, b, M), plain));
      const uint64_t calls0 = cpu::nf4_bf16_dot_calls();
      CHECK(same_bits(nf4_forward(Path::Bf16DotFp16Table, xm, w, b, M), plain));
      // Where that path runs, the call really took it (bf16-dot GEMV with the table by adds).
      if (cpu::nf4_bf16_dot_usable() && std::string(cpu::matmul_kernel_set()) == "avx512" && w.bf16_dot_exact)
        CHECK(cpu::nf4_bf16_dot_calls() == calls0 + 1);
      compared++;
    }
  return compared;
}

// A matrix from hand-made parts whose every block's absmax is offset + code8[q] * absmax2.
Nf4Matrix from_parts(int N, int K, float offset, float absmax2, uint32_t seed) {
  std::mt19937 g(seed);
  vector<uint8_t> packed(size_t(N) * K / 2), q(size_t(N) * K / kNf4BlockSize);
  for (auto& b : packed) b = uint8_t(g());
  for (auto& b : q) b = uint8_t(g());
  const size_t nested = (q.size() + kNestedBlockSize - 1) / kNestedBlockSize;
  return nf4_from_parts(N, K, packed, q, vector<float>(nested, absmax2), offset, nullptr, Nf4StorageDType::F16);
}

}  // namespace

TEST_CASE(fp16_table_by_adds_equals_conversions) {
  // Every float of two whole binades (the range's lowest and the one at 1), every 61st float of the whole range and
  // its edges: the table's 16 entries equal block_lut_bf16's (the conversions) and the scalar double rounding, and the
  // fp16-only table equals the fp16 conversion, whose bf16 rounding is the full table.
#if defined(__AVX512F__)
  const uint32_t lo = f32_bits(std::ldexp(1.0f, -10)), hi = f32_bits(std::ldexp(1.0f, 15)), one = f32_bits(1.0f);
  int64_t bad = 0, checked = 0;
  const auto check_table = [&](uint32_t bits, bool scalar_too) {
    const float amax = bits_f32(bits);
    const cpu::f32x16 adds = cpu::block_lut_bf16_fp16_normal(amax),
                      conv = cpu::block_lut_bf16(amax, Nf4StorageDType::F16);
    bad += std::memcmp(&adds, &conv, sizeof adds) != 0;
    // The bf16-dot kernels' table: rounded to fp16 only, then to bf16 by their conversion (round to nearest even).
    const cpu::f32x16 fp16 = cpu::block_lut_fp16_normal(amax),
                      fp16_conv = cpu::round_fp16_x16(cpu::load16(kNf4Table) * amax);
    bad += std::memcmp(&fp16, &fp16_conv, sizeof fp16) != 0;
    if (scalar_too) {
      float got[16], got_fp16[16];
      std::memcpy(got, &adds, sizeof got);
      std::memcpy(got_fp16, &fp16, sizeof got_fp16);
      for (int e = 0; e < 16; e++) {
        bad += f32_bits(got[e]) != f32_bits(round_bf16(round_fp16(kNf4Table[e] * amax)));
        bad += f32_bits(got_fp16[e]) != f32_bits(round_fp16(kNf4Table[e] * amax));
        bad += f32_bits(round_bf16(got_fp16[e])) != f32_bits(got[e]);
      }
    }
    checked++;
  };
  for (uint32_t b = lo; b < lo + (1u << 23); b++) check_table(b, false);
  for (uint32_t b = one; b < one + (1u << 23); b++) check_table(b, false);
  for (uint32_t b = lo; b <= hi; b += 61) check_table(b, true);
  for (uint32_t b : {lo, lo + 1, hi - 1, hi}) check_table(b, true);
  CHECK(bad == 0);
  CHECK(checked > 2 * (1 << 23) + (1 << 21));  // the loops really ran
#endif
}

TEST_CASE(fp16_table_range_flag) {
  const float lo = std::ldexp(1.0f, -10), hi = std::ldexp(1.0f, 15), inf = std::numeric_limits<float>::infinity();
  const auto in_range = [](float a) { return nf4_scales_fp16_table_normal(&a, 1); };
  CHECK(in_range(lo) && in_range(hi) && in_range(1.0f) && in_range(0.02f));
  CHECK(!in_range(std::nextafter(lo, 0.0f)) && !in_range(std::nextafter(hi, inf)) && !in_range(inf));
  CHECK(!in_range(0.0f) && !in_range(-0.0f) && !in_range(-1.0f) && !in_range(std::numeric_limits<float>::quiet_NaN()));
  // Only fp16 storage takes it; a hand-built matrix has no flag.
  const auto wf = randn(size_t(4) * 128, 0.05f, 7500);
  vector<float> wh(wf.size());
  for (size_t i = 0; i < wf.size(); i++) wh[i] = round_fp16(wf[i]);
  CHECK(nf4_quantize(wh.data(), 4, 128, Nf4StorageDType::F16).fp16_table_normal);
  CHECK(!nf4_quantize(wf.data(), 4, 128, Nf4StorageDType::BF16).fp16_table_normal);
  CHECK(!nf4_quantize(wf.data(), 4, 128, Nf4StorageDType::F32).fp16_table_normal);
  CHECK(!Nf4Matrix{}.fp16_table_normal);
}

TEST_CASE(fp16_table_path_equals_fma_and_bf16_dot_paths) {
  // Decode shapes (odd N, 1 to 16 blocks a row), every storage dtype (only fp16 takes the table by adds; the others
  // check that the routing leaves them alone), tiny scales outside the range, 1 and 2 threads.
  const int shapes[][2] = {{64, 1}, {128, 37}, {192, 5}, {896, 97}, {1024, 19}};
  uint32_t seed = 7600;
  int compared = 0;
  for (int threads : {1, 2}) {
    set_cpu_thread_count(threads);
    for (auto& s : shapes) {
      const int K = s[0], N = s[1];
      for (float sigma : {0.05f, 3e-6f})
        for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
          auto wf = randn(size_t(N) * K, sigma, seed++);
          if (dt == Nf4StorageDType::F16)
            for (auto& v : wf) v = round_fp16(v);
          const Nf4Matrix w = nf4_quantize(wf.data(), N, K, dt);
          CHECK(w.fp16_table_normal == (dt == Nf4StorageDType::F16 && sigma > 1e-3f));
#if defined(__AVX512F__)
          CHECK(cpu::nf4_fp16_table_usable(w) == w.fp16_table_normal);
#endif
          compared += check_paths_agree(w, seed++);
        }
    }
  }
  set_cpu_thread_count(0);
  CHECK(compared == 2 * 5 * 2 * 3 * cpu::kGemvMaxRows * 2);
}

TEST_CASE(fp16_table_path_at_the_range_edges) {
  // Every block's absmax exactly 2^-10 or 2^15 (offset alone: absmax2 = 0), and absmax straddling 2^-10 (some blocks
  // just below: the flag is off and the matrix takes the usual paths). Same bits on every path.
  const float lo = std::ldexp(1.0f, -10), hi = std::ldexp(1.0f, 15);
  const Nf4Matrix at_lo = from_parts(13, 192, lo, 0.0f, 7700), at_hi = from_parts(13, 192, hi, 0.0f, 7701);
  const Nf4Matrix straddling = from_parts(13, 192, lo, lo / 64, 7702);
  CHECK(at_lo.fp16_table_normal && at_hi.fp16_table_normal && !straddling.fp16_table_normal);
  for (const Nf4Matrix* w : {&at_lo, &at_hi, &straddling}) check_paths_agree(*w, 7703);
}

TEST_MAIN()
