// Parity harness of the matrix ops (matmul, matmul_backward, matmul_nf4, matmul_nf4_backward_input) across backends:
// the CPU backend against a double-precision reference (always), the CUDA backend against the CPU backend and for
// batch invariance, bitwise (when a GPU answers; otherwise each CUDA part prints "skipped: no GPU (<reason>)" and
// passes, so CI without a GPU stays green). Everything goes through the Backend interface: alloc/upload/download.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "gpu_backend.h"
#include "random_data.h"
#include "core/half.h"
#include "dpo/backend.h"
#include "dpo/errors.h"
#include "quant/nf4.h"

using namespace dpo;
using std::vector;

namespace {

using dpo_test::randn;
using dpo_test::randu;

// ---- backends -------------------------------------------------------------------------------------------------
Backend& cpu() {
  static std::unique_ptr<Backend> be = make_cpu_backend();
  return *be;
}

using dpo_test::gpu;
using dpo_test::gpu_reason;

Backend* gpu_or_skip(const char* what) {
  Backend* g = gpu();
  if (!g) std::printf("  %s: skipped: no GPU (%s)\n", what, gpu_reason().c_str());
  return g;
}

using dpo_test::Arena;

// ---- the ops on any backend, host vectors in and out -----------------------------------------------------------
vector<float> run_matmul(Backend& be, const vector<float>& x, const vector<float>& w, const vector<float>* bias, int M,
                         int K, int N) {
  Arena a(be);
  float* out = a.alloc(size_t(M) * N);
  be.matmul(out, a.put(x), a.put(w), bias ? a.put(*bias) : nullptr, M, K, N);
  return a.get(out, size_t(M) * N);
}

struct Grads {
  vector<float> dx, dw, db;
};

// Gradients accumulate into the given initial values (an empty initial vector passes null for that gradient).
Grads run_matmul_backward(Backend& be, const vector<float>& dout, const vector<float>& x, const vector<float>& w,
                          const Grads& init, int M, int K, int N) {
  Arena a(be);
  float* dx = init.dx.empty() ? nullptr : a.put(init.dx);
  float* dw = init.dw.empty() ? nullptr : a.put(init.dw);
  float* db = init.db.empty() ? nullptr : a.put(init.db);
  be.matmul_backward(dx, dw, db, a.put(dout), a.put(x), a.put(w), M, K, N);
  Grads g;
  if (dx) g.dx = a.get(dx, init.dx.size());
  if (dw) g.dw = a.get(dw, init.dw.size());
  if (db) g.db = a.get(db, init.db.size());
  return g;
}

vector<float> run_nf4(Backend& be, const vector<float>& x, const Nf4Matrix& w, const vector<float>* bias, int M) {
  Arena a(be);
  float* out = a.alloc(size_t(M) * w.rows);
  be.matmul_nf4(out, a.put(x), w, bias ? a.put(*bias) : nullptr, M);
  return a.get(out, size_t(M) * w.rows);
}

vector<float> run_nf4_backward(Backend& be, const vector<float>& dout, const Nf4Matrix& w, const vector<float>& dx0,
                               int M) {
  Arena a(be);
  float* dx = a.put(dx0);
  be.matmul_nf4_backward_input(dx, a.put(dout), w, M);
  return a.get(dx, dx0.size());
}

// ---- data and comparisons -------------------------------------------------------------------------------------
vector<float> rows_of(const vector<float>& v, int row0, int rows, int cols) {
  return vector<float>(v.begin() + int64_t(row0) * cols, v.begin() + int64_t(row0 + rows) * cols);
}

vector<float> identity(int n) {
  vector<float> v(size_t(n) * n, 0.0f);
  for (int i = 0; i < n; i++) v[size_t(i) * n + i] = 1.0f;
  return v;
}

// |got - want| <= tol * scale elementwise, scale = the sum of |terms| the element is built from (so summation-order
// differences are judged against the magnitudes summed, robust to cancellation).
void check_scaled(const std::string& what, const vector<float>& got, const vector<double>& want,
                  const vector<double>& scale, double tol) {
  if (got.size() != want.size()) {
    std::printf("  %s: size %zu vs %zu\n", what.c_str(), got.size(), want.size());
    dpo_test::failures()++;
    return;
  }
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const double err = std::fabs(double(got[i]) - want[i]), s = scale[i] + 1e-30;
    worst = std::max(worst, err / s);
    if (!(err <= tol * s)) {
      if (bad < 3) std::printf("  %s[%zu] = %.9g, want %.9g (scale %.3g)\n", what.c_str(), i, got[i], want[i], s);
      bad++;
    }
  }
  if (bad) {
    std::printf("  %s: %d of %zu out of tolerance %g, worst err/scale %.3g\n", what.c_str(), bad, got.size(), tol,
                worst);
    dpo_test::failures()++;
  }
}

void check_scaled(const std::string& what, const vector<float>& got, const vector<float>& want,
                  const vector<double>& scale, double tol) {
  check_scaled(what, got, vector<double>(want.begin(), want.end()), scale, tol);
}

void check_bits(const std::string& what, const float* got, const float* want, size_t n) {
  if (std::memcmp(got, want, n * sizeof(float)) != 0) {
    for (size_t i = 0; i < n; i++)
      if (std::memcmp(got + i, want + i, sizeof(float)) != 0) {
        std::printf("  %s: not bitwise equal at %zu: %.9g vs %.9g\n", what.c_str(), i, got[i], want[i]);
        break;
      }
    dpo_test::failures()++;
  }
}

// Exact equality (== : +0 and -0 match), for results that involve a single rounding whatever the summation order.
void check_equal(const std::string& what, const vector<float>& got, const vector<float>& want) {
  int bad = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); i++)
    if (!(got[i] == want[i])) {
      if (bad < 3) std::printf("  %s[%zu] = %.9g, want %.9g\n", what.c_str(), i, got[i], want[i]);
      bad++;
    }
  if (bad || got.size() != want.size()) {
    std::printf("  %s: %d of %zu differ\n", what.c_str(), bad, want.size());
    dpo_test::failures()++;
  }
}

std::string dims(int M, int K, int N) {
  return "M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N);
}

const int kMs[] = {1, 3, 17, 70};
const int kKs[] = {64, 172, 256, 37};  // 37: odd rows (unaligned loads, NF4 bytes and blocks crossing rows)
const int kNs[] = {8, 61, 512};

// Tolerances against the CPU (relative to the summed magnitudes): fp32 sums differ in order only; the NF4 products
// are exact in both (bf16 x bf16), the sums differ in order and in the tensor cores' accumulation.
constexpr double kTolF32 = 1e-5, kTolNf4 = 1e-3, kTolRef = 1e-5;

// ---- fp32 matmul ----------------------------------------------------------------------------------------------
void matmul_reference(const vector<float>& x, const vector<float>& w, const vector<float>* bias, int M, int K, int N,
                      vector<double>& ref, vector<double>& scale) {
  ref.assign(size_t(M) * N, 0.0), scale.assign(size_t(M) * N, 0.0);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = bias ? (*bias)[n] : 0.0, a = bias ? std::fabs((*bias)[n]) : 0.0;
      for (int k = 0; k < K; k++) {
        const double p = double(x[size_t(m) * K + k]) * w[size_t(n) * K + k];
        s += p, a += std::fabs(p);
      }
      ref[size_t(m) * N + n] = s, scale[size_t(m) * N + n] = a;
    }
}

TEST_CASE(matmul_forward_parity) {
  Backend* g = gpu_or_skip("matmul forward on CUDA");
  uint32_t seed = 1;
  for (int K : kKs)
    for (int N : kNs) {
      const vector<float> w = randu(size_t(N) * K, -1, 1, seed++), bias = randu(N, -1, 1, seed++);
      const vector<float> x70 = randu(size_t(70) * K, -1, 1, seed++);
      for (int M : kMs) {
        const vector<float> x = rows_of(x70, 0, M, K);
        const vector<float>* b = (M + N) % 2 ? &bias : nullptr;
        vector<double> ref, scale;
        matmul_reference(x, w, b, M, K, N, ref, scale);
        const vector<float> c = run_matmul(cpu(), x, w, b, M, K, N);
        check_scaled("cpu matmul " + dims(M, K, N), c, ref, scale, kTolRef);
        if (!g) continue;
        const vector<float> d = run_matmul(*g, x, w, b, M, K, N);
        check_scaled("cuda matmul " + dims(M, K, N), d, c, scale, kTolF32);
      }
      if (!g) continue;
      // Batch invariance: row m of the 70-row product equals the same row computed alone or in 17 rows, bitwise.
      const vector<float> all = run_matmul(*g, x70, w, &bias, 70, K, N);
      for (int m : {0, 16, 69}) {
        const vector<float> one = run_matmul(*g, rows_of(x70, m, 1, K), w, &bias, 1, K, N);
        check_bits("cuda matmul row " + std::to_string(m) + " M=1 vs M=70 " + dims(70, K, N), one.data(),
                   all.data() + size_t(m) * N, N);
      }
      const vector<float> part = run_matmul(*g, x70, w, &bias, 17, K, N);
      check_bits("cuda matmul rows 0..16 M=17 vs M=70 " + dims(70, K, N), part.data(), all.data(), size_t(17) * N);
    }
}

// Large enough for the 128 x 128 tile shape on the GPU: its rows must equal the small-tile (M=1) rows bitwise.
TEST_CASE(matmul_big_tiles_batch_invariance) {
  Backend* g = gpu_or_skip("matmul big tiles on CUDA");
  if (!g) return;
  const int M = 2048, K = 64, N = 2560;
  const vector<float> x = randu(size_t(M) * K, -1, 1, 101), w = randu(size_t(N) * K, -1, 1, 102);
  const vector<float> d = run_matmul(*g, x, w, nullptr, M, K, N);
  const vector<float> c = run_matmul(cpu(), x, w, nullptr, M, K, N);
  vector<double> scale(size_t(M) * N);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double a = 0;
      for (int k = 0; k < K; k++) a += std::fabs(double(x[size_t(m) * K + k]) * w[size_t(n) * K + k]);
      scale[size_t(m) * N + n] = a;
    }
  check_scaled("cuda matmul " + dims(M, K, N), d, c, scale, kTolF32);
  for (int m : {0, 777, 2047}) {
    const vector<float> one = run_matmul(*g, rows_of(x, m, 1, K), w, nullptr, 1, K, N);
    check_bits("cuda matmul big-tile row " + std::to_string(m) + " vs M=1", one.data(), d.data() + size_t(m) * N, N);
  }
}

TEST_CASE(matmul_backward_parity) {
  Backend* g = gpu_or_skip("matmul backward on CUDA");
  uint32_t seed = 1000;
  for (int K : kKs)
    for (int N : kNs)
      for (int M : kMs) {
        const vector<float> x = randu(size_t(M) * K, -1, 1, seed++), w = randu(size_t(N) * K, -1, 1, seed++);
        const vector<float> dout = randu(size_t(M) * N, -1, 1, seed++);
        Grads init{randu(size_t(M) * K, -1, 1, seed++), randu(size_t(N) * K, -1, 1, seed++),
                   randu(size_t(N), -1, 1, seed++)};
        // Double reference and the magnitudes each element sums.
        vector<double> rdx(init.dx.begin(), init.dx.end()), rdw(init.dw.begin(), init.dw.end()),
            rdb(init.db.begin(), init.db.end());
        vector<double> sdx(rdx.size()), sdw(rdw.size()), sdb(rdb.size());
        for (size_t i = 0; i < rdx.size(); i++) sdx[i] = std::fabs(rdx[i]);
        for (size_t i = 0; i < rdw.size(); i++) sdw[i] = std::fabs(rdw[i]);
        for (size_t i = 0; i < rdb.size(); i++) sdb[i] = std::fabs(rdb[i]);
        for (int m = 0; m < M; m++)
          for (int n = 0; n < N; n++) {
            const double go = dout[size_t(m) * N + n];
            rdb[n] += go, sdb[n] += std::fabs(go);
            for (int k = 0; k < K; k++) {
              const double px = go * w[size_t(n) * K + k], pw = go * x[size_t(m) * K + k];
              rdx[size_t(m) * K + k] += px, sdx[size_t(m) * K + k] += std::fabs(px);
              rdw[size_t(n) * K + k] += pw, sdw[size_t(n) * K + k] += std::fabs(pw);
            }
          }
        const Grads c = run_matmul_backward(cpu(), dout, x, w, init, M, K, N);
        const std::string d = dims(M, K, N);
        check_scaled("cpu dx " + d, c.dx, rdx, sdx, kTolRef);
        check_scaled("cpu dw " + d, c.dw, rdw, sdw, kTolRef);
        check_scaled("cpu dbias " + d, c.db, rdb, sdb, kTolRef);
        if (!g) continue;
        const Grads r = run_matmul_backward(*g, dout, x, w, init, M, K, N);
        check_scaled("cuda dx " + d, r.dx, c.dx, sdx, kTolF32);
        check_scaled("cuda dw " + d, r.dw, c.dw, sdw, kTolF32);
        check_scaled("cuda dbias " + d, r.db, c.db, sdb, kTolF32);
        // Null gradients are skipped: only dx requested.
        const Grads only_dx = run_matmul_backward(*g, dout, x, w, Grads{init.dx, {}, {}}, M, K, N);
        check_bits("cuda dx alone " + d, only_dx.dx.data(), r.dx.data(), r.dx.size());
        if (M == 70) {  // dx row m depends on dout row m only: bitwise the same computed alone
          for (int m : {0, 33, 69}) {
            const Grads one = run_matmul_backward(*g, rows_of(dout, m, 1, N), rows_of(x, m, 1, K), w,
                                                  Grads{rows_of(init.dx, m, 1, K), {}, {}}, 1, K, N);
            check_bits("cuda dx row " + std::to_string(m) + " M=1 vs M=70 " + d, one.dx.data(),
                       r.dx.data() + size_t(m) * K, K);
          }
        }
      }
}

// The model's calls with degenerate shapes (device_weights.cpp, logits_pass.cpp): the lm_head row sum as
// matmul_backward(dx = sum, dw = null, dbias = null, dout = ones (1,V), x = null, w = lm_head, M = 1), and its use as
// a matmul with N = 1. x is never read when dw is null.
TEST_CASE(matmul_model_degenerate_shapes) {
  Backend* g = gpu_or_skip("matmul N=1 / null x on CUDA");
  const int K = 173, V = 3001, M = 37;
  const vector<float> w = randu(size_t(V) * K, -1, 1, 501), x = randu(size_t(M) * K, -1, 1, 502);
  const vector<float> ones(size_t(V), 1.0f), sum0(size_t(K), 0.0f);
  vector<double> sscale(size_t(K), 0.0);
  for (int n = 0; n < V; n++)
    for (int k = 0; k < K; k++) sscale[size_t(k)] += std::fabs(double(w[size_t(n) * K + k]));
  auto row_sum = [&](Backend& be) {
    Arena a(be);
    float* dx = a.put(sum0);
    be.matmul_backward(dx, nullptr, nullptr, a.put(ones), nullptr, a.put(w), 1, K, V);
    return a.get(dx, size_t(K));
  };
  const vector<float> c_sum = row_sum(cpu());
  const vector<float> c_out = run_matmul(cpu(), x, c_sum, nullptr, M, K, 1);
  if (!g) return;
  const vector<float> g_sum = row_sum(*g);
  check_scaled("cuda lm_head row sum (x = null)", g_sum, c_sum, sscale, kTolF32);
  vector<double> ref, scale;
  matmul_reference(x, c_sum, nullptr, M, K, 1, ref, scale);
  const vector<float> g_out = run_matmul(*g, x, c_sum, nullptr, M, K, 1);
  check_scaled("cuda matmul N=1", g_out, c_out, scale, kTolF32);
  const vector<float> one = run_matmul(*g, rows_of(x, M - 1, 1, K), c_sum, nullptr, 1, K, 1);
  check_bits("cuda matmul N=1 row M-1 alone", one.data(), g_out.data() + (M - 1), 1);
}

// ---- NF4 ------------------------------------------------------------------------------------------------------
float round_storage(float v, Nf4StorageDType t) {
  return t == Nf4StorageDType::F16 ? round_fp16(v) : t == Nf4StorageDType::BF16 ? round_bf16(v) : v;
}

Nf4Matrix make_nf4(int N, int K, Nf4StorageDType t, uint32_t seed) {
  vector<float> w = randn(size_t(N) * K, 0.05f, seed);
  for (float& v : w) v = round_storage(v, t);  // the reference quantizes weights already in the storage dtype
  return nf4_quantize(w.data(), N, K, t);
}

// W as the GEMM sees it: bf16(storage(dequant)) (N*K).
vector<float> nf4_bf16(const Nf4Matrix& w) {
  vector<float> d(size_t(w.numel()));
  nf4_dequantize(w, d.data());
  for (float& v : d) v = round_bf16(v);
  return d;
}

vector<float> bf16_of(const vector<float>& v) {
  vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); i++) r[i] = round_bf16(v[i]);
  return r;
}

const char* dtype_name(Nf4StorageDType t) {
  return t == Nf4StorageDType::F16 ? "f16" : t == Nf4StorageDType::BF16 ? "bf16" : "f32";
}

void nf4_forward_case(Backend* g, int M, int K, int N, Nf4StorageDType t, uint32_t seed, bool with_bias) {
  const Nf4Matrix w = make_nf4(N, K, t, seed);
  const vector<float> wq = nf4_bf16(w);
  const vector<float> x70 = randu(size_t(70) * K, -2, 2, seed + 1), bias = randu(N, -1, 1, seed + 2);
  const vector<float>* b = with_bias ? &bias : nullptr;
  const vector<float> x = rows_of(x70, 0, M, K), xb = bf16_of(x);
  vector<double> ref, scale;
  matmul_reference(xb, wq, b, M, K, N, ref, scale);
  const std::string d = dims(M, K, N) + " " + dtype_name(t);
  const vector<float> c = run_nf4(cpu(), x, w, b, M);
  check_scaled("cpu nf4 " + d, c, ref, scale, kTolRef);
  if (!g) return;
  const vector<float> r = run_nf4(*g, x, w, b, M);
  check_scaled("cuda nf4 " + d, r, c, scale, kTolNf4);
  if (M != 70) return;
  // Batch invariance across both kernel shapes (M <= 16 decode tiles, larger prefill tiles): bitwise rows.
  for (int m : {0, 15, 69}) {
    const vector<float> one = run_nf4(*g, rows_of(x70, m, 1, K), w, b, 1);
    check_bits("cuda nf4 row " + std::to_string(m) + " M=1 vs M=70 " + d, one.data(), r.data() + size_t(m) * N, N);
  }
  const vector<float> r3 = run_nf4(*g, x70, w, b, 3), r17 = run_nf4(*g, x70, w, b, 17);
  check_bits("cuda nf4 rows 0..2 M=3 vs M=70 " + d, r3.data(), r.data(), size_t(3) * N);
  check_bits("cuda nf4 rows 0..16 M=17 vs M=70 " + d, r17.data(), r.data(), size_t(17) * N);
}

TEST_CASE(matmul_nf4_forward_parity) {
  Backend* g = gpu_or_skip("matmul_nf4 on CUDA");
  uint32_t seed = 2000;
  for (int K : kKs)
    for (int N : kNs)
      for (int M : kMs) nf4_forward_case(g, M, K, N, Nf4StorageDType::F16, seed += 3, (M + K) % 2 == 0);
  for (Nf4StorageDType t : {Nf4StorageDType::BF16, Nf4StorageDType::F32})
    for (int M : {3, 70}) nf4_forward_case(g, M, 172, 61, t, seed += 3, true);
}

void nf4_backward_case(Backend* g, int M, int K, int N, Nf4StorageDType t, uint32_t seed) {
  const Nf4Matrix w = make_nf4(N, K, t, seed);
  const vector<float> wq = nf4_bf16(w);
  const vector<float> dout70 = randu(size_t(70) * N, -2, 2, seed + 1), dx70 = randu(size_t(70) * K, -1, 1, seed + 2);
  const vector<float> dout = rows_of(dout70, 0, M, N), dx0 = rows_of(dx70, 0, M, K), db = bf16_of(dout);
  vector<double> ref(dx0.begin(), dx0.end()), scale(dx0.size());
  for (size_t i = 0; i < dx0.size(); i++) scale[i] = std::fabs(dx0[i]);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++) {
        const double p = double(db[size_t(m) * N + n]) * wq[size_t(n) * K + k];
        ref[size_t(m) * K + k] += p, scale[size_t(m) * K + k] += std::fabs(p);
      }
  const std::string d = dims(M, K, N) + " " + dtype_name(t);
  const vector<float> c = run_nf4_backward(cpu(), dout, w, dx0, M);
  check_scaled("cpu nf4 dx " + d, c, ref, scale, kTolRef);
  if (!g) return;
  const vector<float> r = run_nf4_backward(*g, dout, w, dx0, M);
  check_scaled("cuda nf4 dx " + d, r, c, scale, kTolNf4);
  if (M != 70) return;
  for (int m : {0, 15, 69}) {
    const vector<float> one = run_nf4_backward(*g, rows_of(dout70, m, 1, N), w, rows_of(dx70, m, 1, K), 1);
    check_bits("cuda nf4 dx row " + std::to_string(m) + " M=1 vs M=70 " + d, one.data(), r.data() + size_t(m) * K,
               K);
  }
  const vector<float> r5 = run_nf4_backward(*g, dout70, w, rows_of(dx70, 0, 5, K), 5);
  check_bits("cuda nf4 dx rows 0..4 M=5 vs M=70 " + d, r5.data(), r.data(), size_t(5) * K);
}

TEST_CASE(matmul_nf4_backward_parity) {
  Backend* g = gpu_or_skip("matmul_nf4_backward_input on CUDA");
  uint32_t seed = 3000;
  for (int K : kKs)
    for (int N : kNs)
      for (int M : kMs) nf4_backward_case(g, M, K, N, Nf4StorageDType::F16, seed += 3);
  for (Nf4StorageDType t : {Nf4StorageDType::BF16, Nf4StorageDType::F32}) nf4_backward_case(g, 70, 172, 61, t, seed += 3);
}

// Exact probes of the fused dequantization: x = identity gives out = Wq^T and dout = identity gives dx = Wq, each
// element a single product plus exact zeros, so CPU and CUDA must agree exactly whatever their summation order
// (any wrong nibble, absmax block or rounding step shows here, including blocks crossing rows at K = 172 and 37).
TEST_CASE(matmul_nf4_dequant_exact) {
  Backend* g = gpu_or_skip("nf4 dequant probes on CUDA");
  uint32_t seed = 4000;
  for (Nf4StorageDType t : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32})
    for (int K : kKs)
      for (int N : {8, 61}) {
        const Nf4Matrix w = make_nf4(N, K, t, seed++);
        const vector<float> wq = nf4_bf16(w);
        vector<float> wt(size_t(K) * N);  // Wq^T (K,N)
        for (int n = 0; n < N; n++)
          for (int k = 0; k < K; k++) wt[size_t(k) * N + n] = wq[size_t(n) * K + k];
        const std::string d = dims(K, K, N) + " " + dtype_name(t);
        const vector<float> c = run_nf4(cpu(), identity(K), w, nullptr, K);
        check_equal("cpu nf4 identity " + d, c, wt);
        const vector<float> cb = run_nf4_backward(cpu(), identity(N), w, vector<float>(size_t(N) * K, 0.0f), N);
        check_equal("cpu nf4 dx identity " + d, cb, wq);
        if (!g) continue;
        check_equal("cuda nf4 identity " + d, run_nf4(*g, identity(K), w, nullptr, K), wt);
        check_equal("cuda nf4 dx identity " + d,
                    run_nf4_backward(*g, identity(N), w, vector<float>(size_t(N) * K, 0.0f), N), wq);
        // The decode shape on the same probe: the first rows of the identity.
        const vector<float> few = run_nf4(*g, rows_of(identity(K), 0, std::min(K, 5), K), w, nullptr, std::min(K, 5));
        check_equal("cuda nf4 identity (decode rows) " + d, few, rows_of(wt, 0, std::min(K, 5), N));
      }
}

// A matrix without the host absmax cache (dequantized on upload) gives the same bits; the device copy is cached.
TEST_CASE(cuda_nf4_weight_cache) {
  Backend* g = gpu_or_skip("nf4 weight cache on CUDA");
  if (!g) return;
  const int M = 9, K = 172, N = 61;
  const Nf4Matrix w = make_nf4(N, K, Nf4StorageDType::F16, 77);
  Nf4Matrix bare = w;
  bare.absmax.clear();
  const vector<float> x = randu(size_t(M) * K, -1, 1, 78);
  const vector<float> a = run_nf4(*g, x, w, nullptr, M), a2 = run_nf4(*g, x, w, nullptr, M);
  const vector<float> b = run_nf4(*g, x, bare, nullptr, M);
  check_bits("cuda nf4 cached call", a2.data(), a.data(), a.size());
  check_bits("cuda nf4 without host absmax", b.data(), a.data(), a.size());
}

// Memory calls: round trip, and an impossible allocation is E_OOM with advice (never an abort).
TEST_CASE(cuda_memory) {
  Backend* g = gpu_or_skip("memory calls on CUDA");
  if (!g) return;
  CHECK(g->kind() == BackendKind::Cuda);
  const vector<float> v = randu(1000, -1, 1, 5);
  {
    Arena a(*g);
    const vector<float> back = a.get(a.put(v), v.size());
    check_bits("upload/download round trip", back.data(), v.data(), v.size());
  }
  CHECK_THROWS_CODE(g->alloc(size_t(1) << 50), ErrorCode::Oom, "--backend cpu");
  void* p = g->alloc(0);  // zero bytes is a valid allocation
  g->free(p);
  g->synchronize();
}

TEST_CASE(cuda_unavailable_is_no_cuda) {
  // make_cuda_backend either works or throws E_NO_CUDA with a reason (checked in gpu()); never anything else.
  if (!gpu()) {
    CHECK(!gpu_reason().empty());
    std::printf("  skipped: no GPU (%s)\n", gpu_reason().c_str());
  }
}

}  // namespace

TEST_MAIN()
