// The CPU ops' vectorised exp (src/cpu/vec_exp.h, docs/cpu-kernels.md#the-vectorised-exp): its error against a double
// reference over a dense sweep of the float range, its edge cases, and that a value's exp does not depend on its lane
// or on the length of the row it sits in.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "check.h"
#include "op_checks.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "cpu/vec_exp.h"

using namespace dpo;
using namespace dpo_test;
using std::vector;

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// |y - e| in units of the float spacing at e (2^-149 below the normal range).
double ulps(float y, double e) {
  if (std::isinf(float(e))) return std::isinf(y) && y > 0 ? 0.0 : 1e30;  // rounds past FLT_MAX
  int ex;
  std::frexp(e, &ex);  // e in [2^(ex-1), 2^ex)
  const double ulp = std::ldexp(1.0, std::max(ex - 24, -149));
  return std::fabs(double(y) - e) / ulp;
}

// exp of n values through exp_shifted_scaled (shift 0, scale 1), 16 lanes and the tail path alike.
vector<float> vec_exp(const vector<float>& x) {
  vector<float> y(x.size());
  cpu::exp_shifted_scaled(y.data(), x.data(), 0.0f, 1.0f, int64_t(x.size()));
  return y;
}

}  // namespace

// Measured worst: 0.92 ulp with FMA (AVX2, AVX-512), 1.20 ulp on baseline x86-64 (products rounded apart).
#if defined(__FMA__)
constexpr double kExpUlpBound = 1.0;
#else
constexpr double kExpUlpBound = 1.5;
#endif

TEST_CASE(exp_error_is_within_its_bound_over_the_float_range) {
  // Every 61st bit pattern of both signs: about 70 million values, all exponents and mantissa patterns.
  double worst = 0.0;
  float worst_x = 0.0f;
  vector<float> x;
  x.reserve(1 << 20);
  auto flush = [&] {
    const auto y = vec_exp(x);
    for (size_t i = 0; i < x.size(); i++) {
      if (std::isnan(x[i])) continue;
      const double u = ulps(y[i], std::exp(double(x[i])));
      if (u > worst) worst = u, worst_x = x[i];
    }
    x.clear();
  };
  for (uint64_t u = 0; u <= 0xffffffffull; u += 61) {
    x.push_back(from_bits(uint32_t(u)));
    if (x.size() == (1u << 20)) flush();
  }
  flush();
  std::printf("  worst error %.3f ulp at x = %.9g\n", worst, double(worst_x));
  CHECK(worst <= kExpUlpBound);
}

TEST_CASE(exp_edge_cases) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const vector<float> x = {0.0f,      -0.0f,  inf,     -inf,         nan,        -nan,       88.72283f,
                           88.72284f, 89.0f,  1e30f,   -87.33654f,   -103.9720f, -103.9721f, -104.0f,
                           -1e30f,    1e-30f, -1e-30f, from_bits(1), 1.0f,       -1.0f};
  const auto y = vec_exp(x);
  CHECK(y[0] == 1.0f && y[1] == 1.0f);
  CHECK(y[2] == inf && y[3] == 0.0f);
  CHECK(std::isnan(y[4]) && std::isnan(y[5]));
  CHECK(std::isfinite(y[6]) && y[7] == inf && y[8] == inf && y[9] == inf);  // FLT_MAX is e^88.7228392
  for (size_t i = 10; i < x.size(); i++) CHECK(ulps(y[i], std::exp(double(x[i]))) <= kExpUlpBound);
  CHECK(y[12] == 0.0f && y[13] == 0.0f && y[14] == 0.0f);
  CHECK(y[11] > 0.0f);  // e^-103.972 is just over half the least subnormal
}

TEST_CASE(exp_does_not_depend_on_lane_or_row_length) {
  vector<float> x(37);
  for (size_t i = 0; i < x.size(); i++) x[i] = -20.0f + 1.37f * float(i);
  const auto full = vec_exp(x);
  for (size_t off = 0; off < 17; off++)
    for (size_t len = 1; off + len <= x.size(); len += 3) {
      const vector<float> part(x.begin() + long(off), x.begin() + long(off + len));
      CHECK(same_bits(vec_exp(part).data(), full.data() + off, len));
    }
}

TEST_CASE(swiglu_rows_are_thread_and_length_invariant) {
  const int F = 1000;
  vector<float> gate(F), up(F), dout(F);
  for (int i = 0; i < F; i++) {
    gate[size_t(i)] = -12.0f + 0.024f * float(i);
    up[size_t(i)] = 0.5f - 0.001f * float(i);
    dout[size_t(i)] = 0.25f + 0.0005f * float(i);
  }
  vector<float> ref(F), ref_dg(F, 0.5f), ref_du(F, -0.5f);
  cpu::swiglu_forward(ref.data(), gate.data(), up.data(), 1, F);
  cpu::swiglu_backward(ref_dg.data(), ref_du.data(), dout.data(), gate.data(), up.data(), 1, F);
  for (int i = 0; i < F; i += 97) {  // against the formula in double
    const double g = gate[size_t(i)], sig = 1.0 / (1.0 + std::exp(-g));
    CHECK_CLOSE(ref[size_t(i)], g * sig * up[size_t(i)], 1e-6, 1e-5);
    CHECK_CLOSE(ref_dg[size_t(i)], 0.5 + dout[size_t(i)] * up[size_t(i)] * sig * (1 + g * (1 - sig)), 1e-6, 1e-5);
    CHECK_CLOSE(ref_du[size_t(i)], -0.5 + dout[size_t(i)] * g * sig, 1e-6, 1e-5);
  }
  // Odd offsets and lengths (a thread's range starts anywhere), and 2 threads on a long row.
  for (int off : {0, 1, 7, 16, 33}) {
    const int n = F - off - 5;
    const size_t sn = size_t(n);
    vector<float> out(sn), dg(sn, 0.5f), du(sn, -0.5f);
    cpu::swiglu_forward(out.data(), gate.data() + off, up.data() + off, 1, n);
    cpu::swiglu_backward(dg.data(), du.data(), dout.data() + off, gate.data() + off, up.data() + off, 1, n);
    CHECK(same_bits(out.data(), ref.data() + off, size_t(n)));
    CHECK(same_bits(dg.data(), ref_dg.data() + off, size_t(n)));
    CHECK(same_bits(du.data(), ref_du.data() + off, size_t(n)));
  }
  const int M = 40;  // 40 x 1000 elements: parallel_for splits them (grain 16384)
  vector<float> g2(size_t(M) * F), u2(size_t(M) * F), o1(g2.size()), o2(g2.size());
  for (int m = 0; m < M; m++)
    for (int i = 0; i < F; i++)
      g2[size_t(m) * F + size_t(i)] = gate[size_t((i + 13 * m) % F)], u2[size_t(m) * F + size_t(i)] = up[size_t(i)];
  set_cpu_thread_count(1);
  cpu::swiglu_forward(o1.data(), g2.data(), u2.data(), M, F);
  set_cpu_thread_count(2);
  cpu::swiglu_forward(o2.data(), g2.data(), u2.data(), M, F);
  set_cpu_thread_count(0);
  CHECK(same_bits(o1, o2));
}

TEST_MAIN()
