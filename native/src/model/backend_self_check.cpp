// The GPU self-check (docs/cuda-self-check.md): one tiny call of every Backend op on the candidate and on the CPU
// backend, outputs compared with the tolerances of the op-test registry's CUDA parity checks (tests/backend_ops/,
// docs/op-tests.md). The shapes are small but take the paths real models take:
// NF4 products with decode-sized (M <= 16) and prefill-sized batches, GQA attention with padding, head dim 64.
#include "model/backend_self_check.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "core/device_array.h"
#include "cpu/ops.h"
#include "model/rope_table.h"
#include "quant/nf4.h"
#include "train/optimizer.h"

namespace dpo {
namespace {

using std::vector;

// ---- outputs and how each is compared --------------------------------------------------------------------------

enum class Rule {
  Bits,    // the same bits (any NaN equals any NaN): results with one rounding, or the same arithmetic in order
  Rms,     // |got - want| <= rtol |want| + rtol rms(want): elementwise ops whose sums run in other fixed orders
  Scaled,  // |got - want| <= rtol * scale, scale = the sum of |terms| (matrix products: order-robust)
  AbsRel,  // |got - want| <= atol + rtol |want|
};

struct Output {
  std::string name;
  vector<float> values;
  Rule rule = Rule::Bits;
  double rtol = 0, atol = 0;
  const vector<double>* scale = nullptr;  // Rule::Scaled
};
using Outputs = vector<Output>;

Output bits(std::string name, vector<float> v) { return {std::move(name), std::move(v), Rule::Bits}; }
Output rms(std::string name, vector<float> v, double rtol) { return {std::move(name), std::move(v), Rule::Rms, rtol}; }
Output scaled(std::string name, vector<float> v, double rtol, const vector<double>& scale) {
  return {std::move(name), std::move(v), Rule::Scaled, rtol, 0.0, &scale};
}
Output absrel(std::string name, vector<float> v, double atol, double rtol) {
  return {std::move(name), std::move(v), Rule::AbsRel, rtol, atol};
}
template <class T>
vector<float> as_floats(const vector<T>& v) {
  return vector<float>(v.begin(), v.end());
}

std::string fmt(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.7g", x);
  return b;
}

// Empty when `got` passes `want`'s rule; else which values, how many, and the worst.
std::string compare(const Output& got, const Output& want) {
  if (got.values.size() != want.values.size())
    return want.name + ": " + std::to_string(got.values.size()) + " values, expected " +
           std::to_string(want.values.size());
  double atol = want.atol;
  if (want.rule == Rule::Rms) {
    double ss = 0;
    size_t finite = 0;
    for (float w : want.values)
      if (std::isfinite(w)) ss += double(w) * w, finite++;
    atol = want.rtol * std::sqrt(ss / double(finite ? finite : 1));
  }
  size_t bad = 0, worst_i = 0;
  double worst = -1;
  for (size_t i = 0; i < want.values.size(); i++) {
    const float g = got.values[i], w = want.values[i];
    if (std::memcmp(&g, &w, sizeof(float)) == 0 || (std::isnan(g) && std::isnan(w))) continue;
    double allowed = 0;
    switch (want.rule) {
      case Rule::Bits: allowed = -1; break;
      case Rule::Rms:
      case Rule::AbsRel: allowed = want.rtol * std::fabs(double(w)) + atol; break;
      case Rule::Scaled: allowed = want.rtol * ((*want.scale)[i] + 1e-30); break;
    }
    const double err = std::fabs(double(g) - double(w));
    if (std::isfinite(g) && std::isfinite(w) && err <= allowed) continue;
    bad++;
    const double excess = std::isfinite(err) ? err - allowed : INFINITY;
    if (excess > worst) worst = excess, worst_i = i;
  }
  if (!bad) return "";
  const char* rule = want.rule == Rule::Bits ? "bit-exact" : "within tolerance";
  return want.name + ": " + std::to_string(bad) + " of " + std::to_string(want.values.size()) + " values not " + rule +
         "; e.g. [" + std::to_string(worst_i) + "] = " + fmt(got.values[worst_i]) + ", the CPU gives " +
         fmt(want.values[worst_i]);
}

// ---- inputs ------------------------------------------------------------------------------------------------------

struct Rng {
  std::mt19937 gen;
  explicit Rng(uint32_t seed) : gen(seed) {}
  vector<float> uniform(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    vector<float> v(n);
    for (auto& x : v) x = d(gen);
    return v;
  }
  vector<float> normal(size_t n, float sigma) {
    std::normal_distribution<float> d(0.0f, sigma);
    vector<float> v(n);
    for (auto& x : v) x = d(gen);
    return v;
  }
  vector<int> ints(size_t n, int lo, int hi) {  // [lo, hi]
    std::uniform_int_distribution<int> d(lo, hi);
    vector<int> v(n);
    for (auto& x : v) x = d(gen);
    return v;
  }
};

template <class T>
DeviceArray<T> up(Backend& be, const vector<T>& v) {
  return DeviceArray<T>::from_host(be, v);
}

// scale[i*J + j] = base[i*J + j] + sum_k |a(i, k)| |b(j, k)|: the magnitudes a product's element sums.
template <class A, class B>
vector<double> abs_products(int I, int J, int K, A a, B b, const vector<float>* base = nullptr) {
  vector<double> s(size_t(I) * J, 0.0);
  for (int i = 0; i < I; i++)
    for (int j = 0; j < J; j++) {
      double t = base ? std::fabs((*base)[size_t(i) * J + j]) : 0.0;
      for (int k = 0; k < K; k++) t += std::fabs(double(a(i, k))) * std::fabs(double(b(j, k)));
      s[size_t(i) * J + j] = t;
    }
  return s;
}

// The tolerances of the parity suites.
constexpr double kTolMatmul = 1e-5, kTolNf4 = 1e-3, kTolElementwise = 1e-5, kTolRope = 1e-6, kTolAttnGrad = 2e-5;

struct Check {
  const char* kernel;
  std::function<Outputs(Backend&)> run;
};

// ---- the checks, in the order they run (cheap and basic first) ----------------------------------------------------

void add_matrix_checks(vector<Check>& out) {
  {  // fp32 matmul with bias
    const int M = 5, K = 70, N = 33;
    Rng r(101);
    auto x = r.uniform(size_t(M) * K, -1, 1), w = r.uniform(size_t(N) * K, -1, 1), b = r.uniform(N, -1, 1);
    vector<float> bias_rows(size_t(M) * N);
    for (int m = 0; m < M; m++) std::memcpy(&bias_rows[size_t(m) * N], b.data(), N * sizeof(float));
    auto sc = std::make_shared<vector<double>>(abs_products(
        M, N, K, [&](int m, int k) { return x[size_t(m) * K + k]; }, [&](int n, int k) { return w[size_t(n) * K + k]; },
        &bias_rows));
    out.push_back({"matmul", [=](Backend& be) {
                     auto dx = up(be, x), dw = up(be, w), db = up(be, b);
                     DeviceArray<float> o(be, size_t(M) * N);
                     be.matmul(o.get(), dx.get(), dw.get(), db.get(), M, K, N);
                     return Outputs{scaled("out", o.to_host(), kTolMatmul, *sc)};
                   }});
    auto dout = r.uniform(size_t(M) * N, -1, 1), dx0 = r.uniform(size_t(M) * K, -0.1f, 0.1f),
         dw0 = r.uniform(size_t(N) * K, -0.1f, 0.1f), db0 = r.uniform(N, -0.1f, 0.1f);
    auto sdx = std::make_shared<vector<double>>(abs_products(
        M, K, N, [&](int m, int n) { return dout[size_t(m) * N + n]; },
        [&](int k, int n) { return w[size_t(n) * K + k]; }, &dx0));
    auto sdw = std::make_shared<vector<double>>(abs_products(
        N, K, M, [&](int n, int m) { return dout[size_t(m) * N + n]; },
        [&](int k, int m) { return x[size_t(m) * K + k]; }, &dw0));
    auto sdb = std::make_shared<vector<double>>(abs_products(
        1, N, M, [](int, int) { return 1.0f; }, [&](int n, int m) { return dout[size_t(m) * N + n]; }, &db0));
    out.push_back({"matmul_backward", [=](Backend& be) {
                     auto gx = up(be, dx0), gw = up(be, dw0), gb = up(be, db0);
                     be.matmul_backward(gx.get(), gw.get(), gb.get(), up(be, dout).get(), up(be, x).get(),
                                        up(be, w).get(), M, K, N);
                     return Outputs{scaled("dx", gx.to_host(), kTolMatmul, *sdx),
                                    scaled("dw", gw.to_host(), kTolMatmul, *sdw),
                                    scaled("dbias", gb.to_host(), kTolMatmul, *sdb)};
                   }});
  }
  {  // NF4 (bf16 storage, 172 columns: blocks cross rows) at a decode-sized and a prefill-sized batch
    const int K = 172, N = 72;
    Rng r(202);
    auto wf = r.normal(size_t(N) * K, 0.05f);
    auto w = std::make_shared<Nf4Matrix>(nf4_quantize(wf.data(), N, K, Nf4StorageDType::BF16));
    auto wd = std::make_shared<vector<float>>(size_t(N) * K);
    nf4_dequantize(*w, wd->data());
    auto bias = r.uniform(N, -0.5f, 0.5f);
    struct Case {
      int M;
      vector<float> x, dout, dx0;
      std::shared_ptr<vector<double>> sfwd, sbwd;
    };
    auto cases = std::make_shared<vector<Case>>();
    for (const int M : {3, 20}) {
      Case c{M,
             r.uniform(size_t(M) * K, -1, 1),
             r.uniform(size_t(M) * N, -1, 1),
             r.uniform(size_t(M) * K, -0.1f, 0.1f),
             nullptr,
             nullptr};
      vector<float> bias_rows(size_t(M) * N);
      for (int m = 0; m < M; m++) std::memcpy(&bias_rows[size_t(m) * N], bias.data(), N * sizeof(float));
      c.sfwd = std::make_shared<vector<double>>(abs_products(
          M, N, K, [&](int m, int k) { return c.x[size_t(m) * K + k]; },
          [&](int n, int k) { return (*wd)[size_t(n) * K + k]; }, &bias_rows));
      c.sbwd = std::make_shared<vector<double>>(abs_products(
          M, K, N, [&](int m, int n) { return c.dout[size_t(m) * N + n]; },
          [&](int k, int n) { return (*wd)[size_t(n) * K + k]; }, &c.dx0));
      cases->push_back(std::move(c));
    }
    out.push_back({"matmul_nf4", [=](Backend& be) {
                     Outputs o;
                     auto db = up(be, bias);
                     for (const Case& c : *cases) {
                       DeviceArray<float> y(be, size_t(c.M) * N);
                       be.matmul_nf4(y.get(), up(be, c.x).get(), *w, db.get(), c.M);
                       o.push_back(scaled("out (M=" + std::to_string(c.M) + ")", y.to_host(), kTolNf4, *c.sfwd));
                     }
                     return o;
                   }});
    out.push_back({"matmul_nf4_backward_input", [=](Backend& be) {
                     Outputs o;
                     for (const Case& c : *cases) {
                       auto dx = up(be, c.dx0);
                       be.matmul_nf4_backward_input(dx.get(), up(be, c.dout).get(), *w, c.M);
                       o.push_back(scaled("dx (M=" + std::to_string(c.M) + ")", dx.to_host(), kTolNf4, *c.sbwd));
                     }
                     return o;
                   }});
  }
}

void add_layer_checks(vector<Check>& out) {
  {  // RMSNorm
    const int M = 4, C = 96;
    const float eps = 1e-5f;
    Rng r(303);
    auto x = r.normal(size_t(M) * C, 1.5f), w = r.uniform(C, 0.5f, 1.5f);
    out.push_back({"rmsnorm", [=](Backend& be) {
                     DeviceArray<float> y(be, x.size()), rstd(be, M);
                     be.rmsnorm(y.get(), rstd.get(), up(be, x).get(), up(be, w).get(), M, C, eps);
                     return Outputs{rms("out", y.to_host(), kTolElementwise),
                                    rms("rstd", rstd.to_host(), kTolElementwise)};
                   }});
    vector<float> y(x.size()), rstd(M);
    cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), M, C, eps);
    auto dout = r.normal(x.size(), 1.0f), dx0 = r.normal(x.size(), 0.1f), dw0 = r.normal(C, 0.1f);
    out.push_back({"rmsnorm_backward", [=](Backend& be) {
                     auto dx = up(be, dx0), dw = up(be, dw0);
                     be.rmsnorm_backward(dx.get(), dw.get(), up(be, dout).get(), up(be, x).get(), up(be, w).get(),
                                         up(be, rstd).get(), M, C);
                     return Outputs{rms("dx", dx.to_host(), kTolElementwise), rms("dw", dw.to_host(), kTolElementwise)};
                   }});
  }
  {  // RoPE (in place), forward and backward, with yarn's cos/sin factor on (model/rope_table.h)
    const int M = 6, H = 4, HD = 64;
    RopeTable table = default_rope_table(HD, 1e6f);
    table.attention_scaling = 1.1386294f;
    Rng r(404);
    auto x = r.normal(size_t(M) * H * HD, 1.0f);
    auto pos = r.ints(M, 0, 4095);
    pos[0] = 0;
    for (const bool backward : {false, true})
      out.push_back({backward ? "rope_backward" : "rope", [=](Backend& be) {
                       auto dx = up(be, x);
                       auto dpos = up(be, pos);
                       if (backward) be.rope_backward(dx.get(), dpos.get(), M, H, HD, table);
                       else be.rope(dx.get(), dpos.get(), M, H, HD, table);
                       return Outputs{rms("x", dx.to_host(), kTolRope)};
                     }});
  }
  {  // causal GQA attention with left padding (sequence 1), forward, backward and decode against a cache
    const int B = 2, T = 4, S = 7, NH = 4, NKV = 2, HD = 64;
    Rng r(505);
    auto q = r.normal(size_t(B) * T * NH * HD, 1.0f), k = r.normal(size_t(B) * S * NKV * HD, 1.0f),
         v = r.normal(k.size(), 1.0f);
    vector<int> qpos(size_t(B) * T);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) qpos[size_t(b) * T + t] = S - T + t;
    vector<uint8_t> valid(size_t(B) * S, 1);
    valid[size_t(S)] = valid[size_t(S) + 1] = 0;
    const size_t n_probs = size_t(B) * NH * T * S;
    out.push_back({"attention", [=](Backend& be) {
                     DeviceArray<float> o(be, q.size()), probs(be, n_probs);
                     be.attention(o.get(), probs.get(), up(be, q).get(), up(be, k).get(), up(be, v).get(),
                                  up(be, qpos).get(), up(be, valid).get(), B, T, S, NH, NKV, HD);
                     return Outputs{rms("out", o.to_host(), kTolElementwise),
                                    rms("probs", probs.to_host(), kTolElementwise)};
                   }});
    vector<float> o(q.size()), probs(n_probs);
    cpu::attention_forward(o.data(), probs.data(), q.data(), k.data(), v.data(), qpos.data(), valid.data(), B, T, S, NH,
                           NKV, HD);
    auto dout = r.normal(q.size(), 1.0f), dq0 = r.normal(q.size(), 0.05f), dk0 = r.normal(k.size(), 0.05f),
         dv0 = r.normal(k.size(), 0.05f);
    out.push_back({"attention_backward", [=](Backend& be) {
                     auto dq = up(be, dq0), dk = up(be, dk0), dv = up(be, dv0);
                     be.attention_backward(dq.get(), dk.get(), dv.get(), up(be, dout).get(), up(be, probs).get(),
                                           up(be, q).get(), up(be, k).get(), up(be, v).get(), B, T, S, NH, NKV, HD);
                     return Outputs{rms("dq", dq.to_host(), kTolAttnGrad), rms("dk", dk.to_host(), kTolAttnGrad),
                                    rms("dv", dv.to_host(), kTolElementwise)};
                   }});
    const int M = 3, Bc = 2, Sc = 10;
    auto qd = r.normal(size_t(M) * NH * HD, 1.0f), kc = r.normal(size_t(Bc) * Sc * NKV * HD, 1.0f),
         vc = r.normal(kc.size(), 1.0f);
    const vector<int> seq = {0, 1, 1}, pos = {9, 4, 7};
    out.push_back({"attention_decode", [=](Backend& be) {
                     DeviceArray<float> od(be, qd.size());
                     be.attention_decode(od.get(), up(be, qd).get(), up(be, kc).get(), up(be, vc).get(),
                                         up(be, seq).get(), up(be, pos).get(), M, Sc, NH, NKV, HD);
                     return Outputs{rms("out", od.to_host(), kTolElementwise)};
                   }});
  }
  {  // SwiGLU, embedding, residual add
    const int M = 3, F = 96;
    Rng r(606);
    auto gate = r.normal(size_t(M) * F, 3.0f), upv = r.normal(gate.size(), 1.0f), dout = r.normal(gate.size(), 1.0f),
         dg0 = r.normal(gate.size(), 0.1f), du0 = r.normal(gate.size(), 0.1f);
    out.push_back({"swiglu", [=](Backend& be) {
                     DeviceArray<float> o(be, gate.size());
                     be.swiglu(o.get(), up(be, gate).get(), up(be, upv).get(), M, F);
                     return Outputs{rms("out", o.to_host(), kTolElementwise)};
                   }});
    out.push_back(
        {"swiglu_backward", [=](Backend& be) {
           auto dg = up(be, dg0), du = up(be, du0);
           be.swiglu_backward(dg.get(), du.get(), up(be, dout).get(), up(be, gate).get(), up(be, upv).get(), M, F);
           return Outputs{rms("dgate", dg.to_host(), kTolElementwise), rms("dup", du.to_host(), kTolElementwise)};
         }});
    const int V = 50, C = 64, Me = 7;
    auto table = r.normal(size_t(V) * C, 1.0f), demb = r.normal(size_t(Me) * C, 1.0f);
    auto ids = r.ints(Me, 0, V - 1);
    ids[3] = ids[1];  // a repeated id: its rows add in order
    out.push_back({"embedding", [=](Backend& be) {
                     DeviceArray<float> o(be, size_t(Me) * C);
                     be.embedding(o.get(), up(be, ids).get(), up(be, table).get(), Me, C);
                     return Outputs{bits("out", o.to_host())};
                   }});
    out.push_back({"embedding_backward", [=](Backend& be) {
                     auto dt = up(be, table);
                     be.embedding_backward(dt.get(), up(be, demb).get(), up(be, ids).get(), Me, C);
                     return Outputs{bits("dtable", dt.to_host())};
                   }});
    auto a = r.normal(1000, 1.0f), b = r.normal(1000, 1.0f);
    out.push_back({"add", [=](Backend& be) {
                     DeviceArray<float> o(be, a.size());
                     be.add(o.get(), up(be, a).get(), up(be, b).get(), int64_t(a.size()));
                     return Outputs{bits("out", o.to_host())};
                   }});
  }
}

void add_logit_checks(vector<Check>& out) {
  const int M = 4, V = 1000;
  Rng r(707);
  auto logits = r.normal(size_t(M) * V, 3.0f);
  auto target = r.ints(M, 0, V - 1);
  target[3] = -1;  // an unscored row
  out.push_back({"logsoftmax_gather", [=](Backend& be) {
                   DeviceArray<float> logp(be, M), lse(be, M);
                   be.logsoftmax_gather(logp.get(), lse.get(), up(be, logits).get(), up(be, target).get(), M, V);
                   return Outputs{absrel("logp", logp.to_host(), 1e-5, 1e-6), absrel("lse", lse.to_host(), 1e-5, 1e-6)};
                 }});
  vector<float> logp(M), lse(M);
  cpu::logsoftmax_gather_forward(logp.data(), lse.data(), logits.data(), target.data(), M, V);
  auto dlogp = r.normal(M, 1.0f);
  out.push_back({"logsoftmax_gather_backward", [=](Backend& be) {
                   auto dl = up(be, vector<float>(logits.size(), 7.0f));  // overwritten
                   be.logsoftmax_gather_backward(dl.get(), up(be, dlogp).get(), up(be, logits).get(), up(be, lse).get(),
                                                 up(be, target).get(), M, V);
                   return Outputs{rms("dlogits", dl.to_host(), kTolElementwise)};
                 }});
  out.push_back({"argmax_rows", [=](Backend& be) {
                   DeviceArray<int> idx(be, M);
                   be.argmax_rows(idx.get(), up(be, logits).get(), M, V);
                   return Outputs{bits("index", as_floats(idx.to_host()))};
                 }});
}

void add_transfer_checks(vector<Check>& out) {
  const int rows = 6, width = 40, n = 1000;
  Rng r(808);
  auto dst0 = r.normal(size_t(rows) * width, 1.0f), src = r.normal(size_t(3) * width, 1.0f), x = r.normal(n, 1.0f),
       y = r.normal(n, 1.0f);
  const vector<int> scatter_to = {4, 1, 5}, gather_from = {5, 0, 2};
  vector<uint8_t> kept(n);
  for (int i = 0; i < n; i++) kept[size_t(i)] = (i * 7 + i / 5) % 10 != 0;
  const float keep_scale = 1.0f / 0.9f, a = 0.3f;
  out.push_back({"copy", [=](Backend& be) {
                   DeviceArray<float> d(be, x.size());
                   be.copy(d.get(), up(be, x).get(), x.size() * sizeof(float));
                   return Outputs{bits("dst", d.to_host())};
                 }});
  out.push_back({"fill_zero", [=](Backend& be) {
                   auto d = up(be, x);
                   be.fill_zero(d.get() + 100, 500 * sizeof(float));
                   return Outputs{bits("dst", d.to_host())};
                 }});
  out.push_back({"scatter_rows", [=](Backend& be) {
                   auto d = up(be, dst0);
                   be.scatter_rows(d.get(), up(be, scatter_to).get(), up(be, src).get(), 3, width);
                   return Outputs{bits("dst", d.to_host())};
                 }});
  out.push_back({"gather_rows", [=](Backend& be) {
                   DeviceArray<float> d(be, src.size());
                   be.gather_rows(d.get(), up(be, dst0).get(), up(be, gather_from).get(), 3, width);
                   return Outputs{bits("dst", d.to_host())};
                 }});
  out.push_back({"axpy", [=](Backend& be) {
                   auto dy = up(be, y);
                   be.axpy(dy.get(), up(be, x).get(), a, n);
                   return Outputs{bits("y", dy.to_host())};
                 }});
  out.push_back({"scale", [=](Backend& be) {
                   DeviceArray<float> o(be, x.size());
                   be.scale(o.get(), up(be, x).get(), a, n);
                   return Outputs{bits("out", o.to_host())};
                 }});
  out.push_back({"dropout", [=](Backend& be) {
                   DeviceArray<float> o(be, x.size());
                   be.dropout(o.get(), up(be, x).get(), up(be, kept).get(), keep_scale, n);
                   return Outputs{bits("out", o.to_host())};
                 }});
  out.push_back({"dropout_backward", [=](Backend& be) {
                   auto dx = up(be, y);
                   be.dropout_backward(dx.get(), up(be, x).get(), up(be, kept).get(), keep_scale, n);
                   return Outputs{bits("dx", dx.to_host())};
                 }});
}

void add_optimizer_checks(vector<Check>& out) {
  Rng r(909);
  AdamHyper h;
  h.lr = 1e-2;
  h.weight_decay = 0.1;
  {
    auto x = r.uniform(5000, -1, 1);
    out.push_back({"l2_norm", [=](Backend& be) {
                     DeviceArray<float> o(be, 1);
                     be.l2_norm(o.get(), up(be, x).get(), int64_t(x.size()));
                     return Outputs{absrel("norm", o.to_host(), 0.0, 1e-6)};
                   }});
  }
  // Two updates each (so the state read back in the second is the backend's own), compared bit for bit.
  // torch's AdamW and bnb's 32-bit AdamW keep the same fp32 state (param, m, v); each gets two updates.
  auto fp32_state = [&r](const char* kernel, size_t n, auto step) {
    auto p0 = r.uniform(n, -1, 1), g1 = r.normal(n, 1.0f), g2 = r.normal(n, 1.0f);
    return Check{kernel, [=](Backend& be) {
                   auto p = up(be, p0), g = up(be, g1);
                   auto m = DeviceArray<float>::zeros(be, n), v = DeviceArray<float>::zeros(be, n);
                   step(be, p.get(), m.get(), v.get(), g.get(), 1, int64_t(n));
                   g.upload(g2);
                   step(be, p.get(), m.get(), v.get(), g.get(), 2, int64_t(n));
                   return Outputs{bits("param", p.to_host()), bits("m", m.to_host()), bits("v", v.to_host())};
                 }};
  };
  out.push_back(
      fp32_state("adamw_step", 3000, [h](Backend& be, float* p, float* m, float* v, const float* g, int t, int64_t n) {
        be.adamw_step(p, m, v, g, adamw_scalars(h, t), n);
      }));
  out.push_back(fp32_state("adamw_bnb32_step", 1000,
                           [h](Backend& be, float* p, float* m, float* v, const float* g, int t, int64_t n) {
                             be.adamw_bnb32_step(p, m, v, g, bnb_adam_scalars(h, t), n);
                           }));
  {
    const size_t n = 2 * size_t(kAdam8bitBlockSize) + 100, blocks = (n + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize;
    auto p0 = r.uniform(n, -1, 1), g1 = r.normal(n, 1.0f), g2 = r.normal(n, 1.0f);
    out.push_back({"adamw_bnb8bit_step", [=](Backend& be) {
                     auto p = up(be, p0), g = up(be, g1);
                     auto s1 = DeviceArray<uint8_t>::zeros(be, n), s2 = DeviceArray<uint8_t>::zeros(be, n);
                     auto a1 = DeviceArray<float>::zeros(be, blocks), a2 = DeviceArray<float>::zeros(be, blocks);
                     for (int t = 1; t <= 2; t++) {
                       if (t == 2) g.upload(g2);
                       be.adamw_bnb8bit_step(p.get(), s1.get(), s2.get(), a1.get(), a2.get(), g.get(),
                                             bnb_adam_scalars(h, t), int64_t(n));
                     }
                     return Outputs{bits("param", p.to_host()), bits("state1", as_floats(s1.to_host())),
                                    bits("state2", as_floats(s2.to_host())), bits("absmax1", a1.to_host()),
                                    bits("absmax2", a2.to_host())};
                   }});
  }
}

vector<Check> make_checks() {
  vector<Check> c;
  add_transfer_checks(c);
  add_matrix_checks(c);
  add_layer_checks(c);
  add_logit_checks(c);
  add_optimizer_checks(c);
  return c;
}

}  // namespace

vector<std::string> backend_self_check_kernels() {
  vector<std::string> names;
  for (const Check& c : make_checks()) names.push_back(c.kernel);
  return names;
}

SelfCheckResult run_backend_self_check(Backend& candidate, Backend& reference) {
  SelfCheckResult res;
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&] {
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
  };
  vector<Check> checks;
  try {
    checks = make_checks();
  } catch (const std::exception& e) {
    res.detail = std::string("the self-check's inputs could not be made: ") + e.what();
    res.error = true;
    return finish();
  }
  for (const Check& check : checks) {
    res.kernel = check.kernel;
    Outputs want, got;
    try {
      want = check.run(reference);
    } catch (const std::exception& e) {
      res.detail = std::string("the CPU reference failed: ") + e.what();
      res.error = true;
      return finish();
    }
    try {
      got = check.run(candidate);
      candidate.synchronize();
    } catch (const EngineError& e) {
      res.detail = std::string(e.code_name()) + ": " + e.what();
      res.error = true;
      res.error_code = e.code();
      return finish();
    } catch (const std::exception& e) {
      res.detail = e.what();
      res.error = true;
      return finish();
    }
    for (size_t i = 0; i < want.size(); i++) {
      const std::string diff = i < got.size() ? compare(got[i], want[i]) : want[i].name + ": missing";
      if (!diff.empty()) {
        res.detail = diff;
        return finish();
      }
    }
    res.kernels++;
  }
  res.kernel.clear();
  res.passed = true;
  return finish();
}

std::string self_check_failure_message(const std::string& device, const SelfCheckResult& r) {
  std::string m = "the CUDA self-check failed on " + device;
  if (!r.kernel.empty())
    m += ": kernel " + r.kernel +
         (r.error ? " raised an error (" + r.detail + ")" : " differs from the CPU backend (" + r.detail + ")");
  else m += ": " + r.detail;
  return m;
}

const SelfCheckResult& CheckedGpu::self_check() {
  std::call_once(once_, [this] {
    const char* env = std::getenv("DPO_CUDA_SELF_CHECK");
    if (env && std::string(env) == "off") {
      result_.passed = result_.skipped = true;
      result_.detail = "skipped (DPO_CUDA_SELF_CHECK=off)";
      return;
    }
    try {
      std::unique_ptr<Backend> gpu = make_();
      std::unique_ptr<Backend> cpu = make_cpu_backend();
      result_ = run_backend_self_check(*gpu, *cpu);
    } catch (const EngineError& e) {
      result_ = SelfCheckResult{};
      result_.detail = std::string("the backend could not be created: ") + e.code_name() + ": " + e.what();
      result_.error = true;
      result_.error_code = e.code();
    } catch (const std::exception& e) {
      result_ = SelfCheckResult{};
      result_.detail = std::string("the backend could not be created: ") + e.what();
      result_.error = true;
    }
  });
  return result_;
}

std::string CheckedGpu::summary() {
  const SelfCheckResult& r = self_check();
  if (!r.passed) return "failed: " + self_check_failure_message(device_, r);
  if (!r.detail.empty()) return r.detail;
  char b[96];
  std::snprintf(b, sizeof b, "passed (%d kernels compared with the CPU backend, %.1f ms)", r.kernels, r.seconds * 1e3);
  return b;
}

}  // namespace dpo
