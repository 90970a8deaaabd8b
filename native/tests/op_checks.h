// Test helper: the comparisons the op tests make, each counting one failure and printing the worst entries:
// bitwise, scaled by the magnitudes summed (against a double reference), relative to the rms of the reference
// (backend against backend), analytic against finite-difference gradients, and the central differences themselves.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "check.h"

namespace dpo_test {

inline std::vector<double> to_d(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

inline bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Equal bits, or both NaN (NaN payloads differ between x86 and a GPU).
template <class T>
bool same_or_nan(T a, T b) {
  if constexpr (std::is_floating_point_v<T>)
    if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Bitwise equality (any NaN equal to any NaN when nan_equal), reporting the first differences.
template <class T>
void check_bits(const std::string& what, const std::vector<T>& got, const std::vector<T>& want,
                bool nan_equal = false) {
  int bad = got.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < std::min(got.size(), want.size()); i++) {
    const bool same = nan_equal ? same_or_nan(got[i], want[i]) : std::memcmp(&got[i], &want[i], sizeof(T)) == 0;
    if (same) continue;
    if (bad++ < 4) std::printf("  %s[%zu] = %.9g, want %.9g\n", what.c_str(), i, double(got[i]), double(want[i]));
  }
  if (bad) {
    std::printf("  %s: %d of %zu values differ (sizes %zu, %zu)\n", what.c_str(), bad, want.size(), got.size(),
                want.size());
    failures()++;
  }
}

// Exact equality (== : +0 and -0 match), for results that involve a single rounding whatever the summation order.
inline void check_equal(const std::string& what, const std::vector<float>& got, const std::vector<float>& want) {
  int bad = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); i++)
    if (!(got[i] == want[i])) {
      if (bad < 3) std::printf("  %s[%zu] = %.9g, want %.9g\n", what.c_str(), i, got[i], want[i]);
      bad++;
    }
  if (bad || got.size() != want.size()) {
    std::printf("  %s: %d of %zu differ\n", what.c_str(), bad, want.size());
    failures()++;
  }
}

// |got - want| <= tol * scale elementwise, scale = the magnitude the element is built from (the sum of |terms|), so
// summation-order differences are judged against the magnitudes summed, robust to cancellation.
inline void check_scaled(const std::string& what, const float* got, const double* want, const double* scale, size_t n,
                         double tol) {
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    const double err = std::fabs(double(got[i]) - want[i]), s = scale[i] + 1e-30;
    worst = std::max(worst, err / s);
    if (!(err <= tol * s)) {
      if (bad < 3) std::printf("  %s[%zu] = %.9g, want %.9g (scale %.3g)\n", what.c_str(), i, got[i], want[i], s);
      bad++;
    }
  }
  if (bad) {
    std::printf("  %s: %d of %zu out of tolerance %g, worst err/scale %.3g\n", what.c_str(), bad, n, tol, worst);
    failures()++;
  }
}

inline void check_scaled(const std::string& what, const std::vector<float>& got, const std::vector<double>& want,
                         const std::vector<double>& scale, double tol) {
  if (got.size() != want.size() || scale.size() != want.size()) {
    std::printf("  %s: size %zu vs %zu\n", what.c_str(), got.size(), want.size());
    failures()++;
    return;
  }
  check_scaled(what, got.data(), want.data(), scale.data(), got.size(), tol);
}

inline void check_scaled(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                         const std::vector<double>& scale, double tol) {
  check_scaled(what, got, to_d(want), scale, tol);
}

// One backend against another: |got - want| <= rtol |want| + rtol * rms(want) (the rms absorbs entries that are
// small through cancellation); NaN only where want is NaN, infinities equal. Prints how many values are identical.
inline void check_near(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                       double rtol = 1e-5) {
  if (got.size() != want.size()) {
    std::printf("  %s: size %zu vs %zu\n", what.c_str(), got.size(), want.size());
    failures()++;
    return;
  }
  double ss = 0;
  size_t finite = 0;
  for (float w : want)
    if (std::isfinite(w)) ss += double(w) * w, finite++;
  const double atol = rtol * std::sqrt(ss / double(std::max<size_t>(finite, 1))) + 1e-30;
  int bad = 0;
  size_t identical = 0;
  double worst = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double g = got[i], w = want[i];
    if (std::memcmp(&got[i], &want[i], sizeof(float)) == 0) identical++;
    bool ok;
    if (std::isnan(w) || std::isinf(w)) ok = std::isnan(w) ? std::isnan(g) : g == w;
    else ok = std::fabs(g - w) <= rtol * std::fabs(w) + atol;
    if (std::isfinite(w) && std::isfinite(g)) worst = std::max(worst, std::fabs(g - w) / (rtol * std::fabs(w) + atol));
    if (!ok) {
      if (bad < 4) std::printf("  %s[%zu] = %.9g, want %.9g\n", what.c_str(), i, g, w);
      bad++;
    }
  }
  std::printf("  %s: %zu values, %zu bit-identical, worst error %.3g of the tolerance%s\n", what.c_str(), want.size(),
              identical, worst, bad ? " <- OUT OF TOLERANCE" : "");
  if (bad) failures()++;
}

// Analytic gradient (a float op) against a numerical one (double): |a - n| <= atol + rtol |n|.
inline void check_grad(const std::string& what, const std::vector<float>& analytic, const std::vector<double>& numeric,
                       double rtol = 1e-3, double atol = 1e-4) {
  int bad = analytic.size() == numeric.size() ? 0 : 1;
  for (size_t i = 0; i < std::min(analytic.size(), numeric.size()); i++) {
    if (!(std::fabs(analytic[i] - numeric[i]) <= atol + rtol * std::fabs(numeric[i]))) {
      if (bad < 3) std::printf("  %s[%zu]: analytic %.8g numeric %.8g\n", what.c_str(), i, analytic[i], numeric[i]);
      bad++;
    }
  }
  if (bad) {
    std::printf("  %s: %d of %zu gradients off\n", what.c_str(), bad, numeric.size());
    failures()++;
  }
}

// Central differences (double, eps 1e-6) of loss() with respect to every entry of p, which loss() reads.
template <class F>
std::vector<double> numeric_grad(std::vector<double>& p, F loss) {
  std::vector<double> g(p.size());
  const double eps = 1e-6;
  for (size_t i = 0; i < p.size(); i++) {
    const double keep = p[i];
    p[i] = keep + eps;
    const double lp = loss();
    p[i] = keep - eps;
    const double lm = loss();
    p[i] = keep;
    g[i] = (lp - lm) / (2 * eps);
  }
  return g;
}

// L = sum(out * G): the loss whose gradient with respect to out is G (the dout handed to a backward op).
inline double dot_loss(const std::vector<double>& out, const std::vector<float>& G) {
  double s = 0;
  for (size_t i = 0; i < out.size(); i++) s += out[i] * G[i];
  return s;
}

// a - b elementwise: what a backward op added to its initial gradient.
inline std::vector<float> minus(std::vector<float> a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); i++) a[i] -= b[i];
  return a;
}

template <class T>
std::vector<T> slice(const std::vector<T>& v, size_t off, size_t n) {
  return std::vector<T>(v.begin() + std::ptrdiff_t(off), v.begin() + std::ptrdiff_t(off + n));
}

}  // namespace dpo_test
