// A minimal test harness for the native tests (run by ctest): CHECK macros that count failures
// and print the failing expression with values, and a main() helper.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace dpo_test {

inline int& failures() {
  static int n = 0;
  return n;
}
struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
struct Register {
  Register(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); }
};

inline int run_all() {
  int failed_cases = 0;
  for (auto& c : cases()) {
    int before = failures();
    const auto t0 = std::chrono::steady_clock::now();
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::printf("  unexpected exception: %s\n", e.what());
      failures()++;
    }
    bool ok = failures() == before;
    if (!ok) failed_cases++;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %s (%.1f s)\n", ok ? "[pass]" : "[FAIL]", c.name, secs);
  }
  std::printf("%d passed, %d failed\n", int(cases().size()) - failed_cases, failed_cases);
  return failed_cases == 0 ? 0 : 1;
}

}  // namespace dpo_test

#define TEST_CASE(name)                              \
  static void name();                                \
  static dpo_test::Register name##_reg(#name, name); \
  static void name()

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      dpo_test::failures()++;                                                \
    }                                                                        \
  } while (0)

// |a - b| <= atol + rtol * |b|
#define CHECK_CLOSE(a, b, atol, rtol)                                                                         \
  do {                                                                                                        \
    double a_ = double(a), b_ = double(b);                                                                    \
    if (!(std::fabs(a_ - b_) <= double(atol) + double(rtol) * std::fabs(b_))) {                               \
      std::printf("  %s:%d: %s = %.9g vs %s = %.9g (atol %g, rtol %g)\n", __FILE__, __LINE__, #a, a_, #b, b_, \
                  double(atol), double(rtol));                                                                \
      dpo_test::failures()++;                                                                                 \
    }                                                                                                         \
  } while (0)

// Expects `stmt` to throw dpo::EngineError with the given code and a message containing `needle`.
#define CHECK_THROWS_CODE(stmt, code_, needle)                                                                        \
  do {                                                                                                                \
    bool thrown_ = false;                                                                                             \
    try {                                                                                                             \
      stmt;                                                                                                           \
    } catch (const dpo::EngineError& e_) {                                                                            \
      thrown_ = true;                                                                                                 \
      if (e_.code() != (code_) || std::string(e_.what()).find(needle) == std::string::npos) {                         \
        std::printf("  %s:%d: wrong error [%s] %s (wanted %s containing '%s')\n", __FILE__, __LINE__, e_.code_name(), \
                    e_.what(), dpo::error_code_name(code_), std::string(needle).c_str());                             \
        dpo_test::failures()++;                                                                                       \
      }                                                                                                               \
    }                                                                                                                 \
    if (!thrown_) {                                                                                                   \
      std::printf("  %s:%d: %s did not throw\n", __FILE__, __LINE__, #stmt);                                          \
      dpo_test::failures()++;                                                                                         \
    }                                                                                                                 \
  } while (0)

#define TEST_MAIN() \
  int main() { return dpo_test::run_all(); }
