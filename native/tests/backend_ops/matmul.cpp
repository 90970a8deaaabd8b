// Cases of Backend::matmul and matmul_backward: every host backend against the double reference over a grid of
// shapes (odd K for unaligned rows), the gradients against finite differences, and the CUDA backend against the CPU
// one: within kTolF32 of the summed magnitudes (fp32 sums in another order), bitwise batch invariance of its rows
// (small and 128x128 tiles), and the model's degenerate calls (N = 1, x = null when dw is null).
#include <cmath>
#include <string>
#include <vector>

#include "backend_ops/matrix_shapes.h"
#include "backend_ops/registry.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

// Tolerances relative to the summed magnitudes: against the double reference, and CUDA against the CPU.
constexpr double kTolRef = 1e-5, kTolF32 = 1e-5;

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

// The double reference of a float problem and the magnitudes each element sums.
void reference(const vector<float>& x, const vector<float>& w, const vector<float>* bias, int M, int K, int N,
               vector<double>& ref, vector<double>& scale) {
  const vector<double> bd = bias ? to_d(*bias) : vector<double>();
  ref_matmul(ref, &scale, to_d(x), to_d(w), bias ? bd.data() : nullptr, M, K, N);
}

}  // namespace

OP_CASE(matmul) {
  if (!ctx.eval()) return;
  // Edge shapes (1x1x1, K = 1000, N = 1000) on the host backends, with and without bias.
  const int shapes[][3] = {{1, 1, 1}, {3, 172, 64}, {7, 64, 1000}, {5, 17, 3}, {2, 1000, 33}, {64, 130, 129}};
  uint32_t seed = 100;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto x = randu(size_t(M) * K, -1, 1, seed++), w = randu(size_t(N) * K, -1, 1, seed++);
    const auto bias = randu(size_t(N), -1, 1, seed++);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      vector<double> ref, scale;
      reference(x, w, with_bias ? &bias : nullptr, M, K, N, ref, scale);
      for (const Target& t : ctx.hosts())
        check_scaled(t.name + " matmul " + dims(M, K, N), run_matmul(*t.be, x, w, with_bias ? &bias : nullptr, M, K, N),
                     ref, scale, kTolRef);
    }
  }
  // The parity grid: every host backend against the reference, CUDA against the CPU, and CUDA's batch invariance.
  Backend* g = ctx.cuda_or_skip();
  seed = 1;
  for (int K : kGridKs)
    for (int N : kGridNs) {
      const vector<float> w = randu(size_t(N) * K, -1, 1, seed++), bias = randu(N, -1, 1, seed++);
      const vector<float> x70 = randu(size_t(70) * K, -1, 1, seed++);
      for (int M : kGridMs) {
        const vector<float> x = rows_of(x70, 0, M, K);
        const vector<float>* b = (M + N) % 2 ? &bias : nullptr;
        vector<double> ref, scale;
        reference(x, w, b, M, K, N, ref, scale);
        for (const Target& t : ctx.hosts())
          check_scaled(t.name + " matmul " + dims(M, K, N), run_matmul(*t.be, x, w, b, M, K, N), ref, scale, kTolRef);
        if (!g) continue;
        const vector<float> c = run_matmul(ctx.cpu(), x, w, b, M, K, N);
        check_scaled("cuda matmul " + dims(M, K, N), run_matmul(*g, x, w, b, M, K, N), c, scale, kTolF32);
      }
      if (!g) continue;
      // Row m of the 70-row product equals the same row computed alone or in 17 rows, bitwise.
      const vector<float> all = run_matmul(*g, x70, w, &bias, 70, K, N);
      for (int m : {0, 16, 69}) {
        const vector<float> one = run_matmul(*g, rows_of(x70, m, 1, K), w, &bias, 1, K, N);
        check_bits("cuda matmul row " + std::to_string(m) + " M=1 vs M=70 " + dims(70, K, N), one,
                   rows_of(all, m, 1, N));
      }
      const vector<float> part = run_matmul(*g, x70, w, &bias, 17, K, N);
      check_bits("cuda matmul rows 0..16 M=17 vs M=70 " + dims(70, K, N), part, rows_of(all, 0, 17, N));
    }
  if (!g) return;
  // Large enough for the 128 x 128 tile shape on the GPU: its rows must equal the small-tile (M=1) rows bitwise.
  const int M = 2048, K = 64, N = 2560;
  const vector<float> x = randu(size_t(M) * K, -1, 1, 101), w = randu(size_t(N) * K, -1, 1, 102);
  const vector<float> d = run_matmul(*g, x, w, nullptr, M, K, N);
  const vector<float> c = run_matmul(ctx.cpu(), x, w, nullptr, M, K, N);
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
    check_bits("cuda matmul big-tile row " + std::to_string(m) + " vs M=1", one, rows_of(d, m, 1, N));
  }
}

OP_CASE(matmul_backward) {
  if (ctx.grad()) {
    // dx, dw, dbias against central differences of the double forward, accumulated into nonzero buffers; then null
    // dw / dbias are skipped.
    const int M = 3, K = 19, N = 5;
    const auto x = randu(size_t(M) * K, -1, 1, 1), w = randu(size_t(N) * K, -1, 1, 2), b = randu(N, -1, 1, 3);
    const auto G = randu(size_t(M) * N, -1, 1, 4);
    auto xd = to_d(x), wd = to_d(w), bd = to_d(b);
    vector<double> out;
    auto loss = [&] {
      ref_matmul(out, nullptr, xd, wd, bd.data(), M, K, N);
      return dot_loss(out, G);
    };
    const auto gx = numeric_grad(xd, loss), gw = numeric_grad(wd, loss), gb = numeric_grad(bd, loss);
    const Grads init{randu(x.size(), -1, 1, 5), randu(w.size(), -1, 1, 6), randu(b.size(), -1, 1, 7)};
    for (const Target& t : ctx.all()) {
      const Grads r = run_matmul_backward(*t.be, G, x, w, init, M, K, N);
      check_grad(t.name + " matmul dx", minus(r.dx, init.dx), gx);
      check_grad(t.name + " matmul dw", minus(r.dw, init.dw), gw);
      check_grad(t.name + " matmul dbias", minus(r.db, init.db), gb);
      const Grads only = run_matmul_backward(*t.be, G, x, w, Grads{vector<float>(x.size(), 0.0f), {}, {}}, M, K, N);
      check_grad(t.name + " matmul dx only", only.dx, gx);
    }
  }
  if (!ctx.eval()) return;
  Backend* g = ctx.cuda_or_skip();
  uint32_t seed = 1000;
  for (int K : kGridKs)
    for (int N : kGridNs)
      for (int M : kGridMs) {
        const vector<float> x = randu(size_t(M) * K, -1, 1, seed++), w = randu(size_t(N) * K, -1, 1, seed++);
        const vector<float> dout = randu(size_t(M) * N, -1, 1, seed++);
        Grads init{randu(size_t(M) * K, -1, 1, seed++), randu(size_t(N) * K, -1, 1, seed++),
                   randu(size_t(N), -1, 1, seed++)};
        // Double reference and the magnitudes each element sums.
        vector<double> rdx = to_d(init.dx), rdw = to_d(init.dw), rdb = to_d(init.db);
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
        const std::string d = dims(M, K, N);
        for (const Target& t : ctx.hosts()) {
          const Grads c = run_matmul_backward(*t.be, dout, x, w, init, M, K, N);
          check_scaled(t.name + " dx " + d, c.dx, rdx, sdx, kTolRef);
          check_scaled(t.name + " dw " + d, c.dw, rdw, sdw, kTolRef);
          check_scaled(t.name + " dbias " + d, c.db, rdb, sdb, kTolRef);
        }
        if (!g) continue;
        const Grads c = run_matmul_backward(ctx.cpu(), dout, x, w, init, M, K, N);
        const Grads r = run_matmul_backward(*g, dout, x, w, init, M, K, N);
        check_scaled("cuda dx " + d, r.dx, c.dx, sdx, kTolF32);
        check_scaled("cuda dw " + d, r.dw, c.dw, sdw, kTolF32);
        check_scaled("cuda dbias " + d, r.db, c.db, sdb, kTolF32);
        // Null gradients are skipped: only dx requested.
        const Grads only_dx = run_matmul_backward(*g, dout, x, w, Grads{init.dx, {}, {}}, M, K, N);
        check_bits("cuda dx alone " + d, only_dx.dx, r.dx);
        if (M == 70) {  // dx row m depends on dout row m only: bitwise the same computed alone
          for (int m : {0, 33, 69}) {
            const Grads one = run_matmul_backward(*g, rows_of(dout, m, 1, N), rows_of(x, m, 1, K), w,
                                                  Grads{rows_of(init.dx, m, 1, K), {}, {}}, 1, K, N);
            check_bits("cuda dx row " + std::to_string(m) + " M=1 vs M=70 " + d, one.dx, rows_of(r.dx, m, 1, K));
          }
        }
      }
  // The model's calls with degenerate shapes (device_weights.cpp, logits_pass.cpp): the lm_head row sum as
  // matmul_backward(dx = sum, dw = null, dbias = null, dout = ones (1,V), x = null, w = lm_head, M = 1), and its use
  // as a matmul with N = 1. x is never read when dw is null.
  const int K = 173, V = 3001, M = 37;
  const vector<float> w = randu(size_t(V) * K, -1, 1, 501), x = randu(size_t(M) * K, -1, 1, 502);
  const vector<float> ones(size_t(V), 1.0f), sum0(size_t(K), 0.0f);
  vector<double> sscale(size_t(K), 0.0), sref(size_t(K), 0.0);
  for (int n = 0; n < V; n++)
    for (int k = 0; k < K; k++) {
      sscale[size_t(k)] += std::fabs(double(w[size_t(n) * K + k]));
      sref[size_t(k)] += double(w[size_t(n) * K + k]);
    }
  auto row_sum = [&](Backend& be) {
    Arena a(be);
    float* dx = a.put(sum0);
    be.matmul_backward(dx, nullptr, nullptr, a.put(ones), nullptr, a.put(w), 1, K, V);
    return a.get(dx, size_t(K));
  };
  for (const Target& t : ctx.hosts())
    check_scaled(t.name + " lm_head row sum (x = null)", row_sum(*t.be), sref, sscale, kTolRef);
  if (!g) return;
  const vector<float> c_sum = row_sum(ctx.cpu());
  const vector<float> c_out = run_matmul(ctx.cpu(), x, c_sum, nullptr, M, K, 1);
  check_scaled("cuda lm_head row sum (x = null)", row_sum(*g), c_sum, sscale, kTolF32);
  vector<double> ref, scale;
  reference(x, c_sum, nullptr, M, K, 1, ref, scale);
  const vector<float> g_out = run_matmul(*g, x, c_sum, nullptr, M, K, 1);
  check_scaled("cuda matmul N=1", g_out, c_out, scale, kTolF32);
  const vector<float> one = run_matmul(*g, rows_of(x, M - 1, 1, K), c_sum, nullptr, 1, K, 1);
  check_bits("cuda matmul N=1 row M-1 alone", one, rows_of(g_out, M - 1, 1, 1));
}
