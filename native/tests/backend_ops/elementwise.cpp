// Cases of Backend::swiglu, swiglu_backward, embedding and add: the host backends against double formulas (silu(g)*u
// within 1e-6, embedding rows copied bit for bit, one IEEE add per element with out aliasing a), the swiglu gradients
// against finite differences, a bad token id refused on the host, and CUDA against the CPU: swiglu within 1e-5 with
// saturating gates (exp overflow gives -0), deterministic, null dgate / dup; embedding and add bitwise, a negative id
// giving a zero row on the GPU (ids live on the device there; the caller checks them on the host).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "dpo/errors.h"
#include "op_checks.h"
#include "random_data.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

vector<float> run_swiglu(Backend& be, const vector<float>& gate, const vector<float>& up, int M, int F) {
  Arena a(be);
  float* out = a.alloc(gate.size());
  be.swiglu(out, a.put(gate), a.put(up), M, F);
  return a.get(out, gate.size());
}

struct SwigluGrads {
  vector<float> dgate, dup;
};

// Accumulates into init (an empty gradient passes null).
SwigluGrads run_swiglu_backward(Backend& be, const SwigluGrads& init, const vector<float>& dout,
                                const vector<float>& gate, const vector<float>& up, int M, int F) {
  Arena a(be);
  float* dg = init.dgate.empty() ? nullptr : a.put(init.dgate);
  float* du = init.dup.empty() ? nullptr : a.put(init.dup);
  be.swiglu_backward(dg, du, a.put(dout), a.put(gate), a.put(up), M, F);
  return {dg ? a.get(dg, init.dgate.size()) : vector<float>(), du ? a.get(du, init.dup.size()) : vector<float>()};
}

vector<float> run_embedding(Backend& be, const vector<int>& ids, const vector<float>& table, int C) {
  Arena a(be);
  const int M = int(ids.size());
  float* out = a.alloc(size_t(M) * C);
  be.embedding(out, a.put(ids), a.put(table), M, C);
  return a.get(out, size_t(M) * C);
}

// The swiglu inputs of the CUDA checks: saturating and zero gates among random ones.
struct SwigluData {
  int M = 3, F = 172;
  vector<float> gate, up, dout;
  SwigluGrads init;
};

SwigluData swiglu_data() {
  SwigluData d;
  const size_t n = size_t(d.M) * d.F;
  d.gate = randn(n, 3.0f, 61u);
  d.gate[0] = 30.0f;
  d.gate[1] = -30.0f;
  d.gate[2] = -100.0f;  // exp(100) overflows: silu -> -0
  d.gate[3] = 0.0f;
  d.up = randn(n, 1.0f, 62u);
  d.dout = randn(n, 1.0f, 63u);
  d.init = {randn(n, 0.1f, 64u), randn(n, 0.1f, 65u)};
  return d;
}

}  // namespace

OP_CASE(swiglu) {
  if (!ctx.eval()) return;
  const int M = 3, F = 172;
  const auto g = randu(size_t(M) * F, -6, 6, 1), u = randu(size_t(M) * F, -2, 2, 2);
  for (const Target& t : ctx.hosts()) {
    const vector<float> out = run_swiglu(*t.be, g, u, M, F);
    for (size_t i = 0; i < out.size(); i++) {
      const double gd = g[i], want = gd / (1 + std::exp(-gd)) * u[i];
      CHECK_CLOSE(out[i], want, 1e-7, 1e-6);
    }
  }
  Backend* gpu = ctx.cuda_or_skip();
  if (!gpu) return;
  const SwigluData d = swiglu_data();
  const vector<float> want = run_swiglu(ctx.cpu(), d.gate, d.up, d.M, d.F);
  const vector<float> got = run_swiglu(*gpu, d.gate, d.up, d.M, d.F);
  check_near("swiglu out", got, want);
  check_bits("swiglu again", run_swiglu(*gpu, d.gate, d.up, d.M, d.F), got);
}

OP_CASE(swiglu_backward) {
  if (ctx.grad()) {
    const int M = 2, F = 37;
    const auto g = randu(size_t(M) * F, -5, 5, 1), u = randu(g.size(), -2, 2, 2), G = randu(g.size(), -1, 1, 3);
    auto gd = to_d(g), ud = to_d(u);
    auto loss = [&] {
      double s = 0;
      for (size_t i = 0; i < gd.size(); i++) s += gd[i] / (1 + std::exp(-gd[i])) * ud[i] * G[i];
      return s;
    };
    const auto ng = numeric_grad(gd, loss), nu = numeric_grad(ud, loss);
    const SwigluGrads init{randu(g.size(), -1, 1, 4), randu(g.size(), -1, 1, 5)};
    for (const Target& t : ctx.all()) {
      const SwigluGrads r = run_swiglu_backward(*t.be, init, G, g, u, M, F);
      check_grad(t.name + " swiglu dgate", minus(r.dgate, init.dgate), ng);
      check_grad(t.name + " swiglu dup", minus(r.dup, init.dup), nu);
    }
  }
  if (!ctx.eval()) return;
  Backend* gpu = ctx.cuda_or_skip();
  if (!gpu) return;
  const SwigluData d = swiglu_data();
  const SwigluGrads want = run_swiglu_backward(ctx.cpu(), d.init, d.dout, d.gate, d.up, d.M, d.F);
  const SwigluGrads got = run_swiglu_backward(*gpu, d.init, d.dout, d.gate, d.up, d.M, d.F);
  check_near("dgate", got.dgate, want.dgate);
  check_near("dup", got.dup, want.dup);
  check_bits("dgate alone", run_swiglu_backward(*gpu, {d.init.dgate, {}}, d.dout, d.gate, d.up, d.M, d.F).dgate,
             got.dgate);
  check_bits("dup alone", run_swiglu_backward(*gpu, {{}, d.init.dup}, d.dout, d.gate, d.up, d.M, d.F).dup, got.dup);
}

// The overwriting form into outputs of NaN gives the bits of the accumulating form into zeros, on every backend, one
// output or both (a tail past the last 16 lanes, gates that saturate, dout -0 where a plain store would keep -0).
OP_CASE(swiglu_backward_overwrite) {
  if (!ctx.eval()) return;
  SwigluData d = swiglu_data();
  for (int i = 0; i < 20; i++) d.dout[size_t(i)] = -0.0f;
  const size_t n = d.gate.size();
  const vector<float> zeros(n, 0.0f), nans(n, std::nanf(""));
  for (const Target& t : ctx.all()) {
    const SwigluGrads want = run_swiglu_backward(*t.be, {zeros, zeros}, d.dout, d.gate, d.up, d.M, d.F);
    for (int which = 0; which < 3; which++) {  // both, dgate alone, dup alone
      Arena a(*t.be);
      float* dg = which == 2 ? nullptr : a.put(nans);
      float* du = which == 1 ? nullptr : a.put(nans);
      t.be->swiglu_backward_overwrite(dg, du, a.put(d.dout), a.put(d.gate), a.put(d.up), d.M, d.F);
      if (dg) check_bits(t.name + " dgate overwritten", a.get(dg, n), want.dgate);
      if (du) check_bits(t.name + " dup overwritten", a.get(du, n), want.dup);
    }
  }
}

OP_CASE(embedding) {
  if (!ctx.eval()) return;
  {
    const int V = 10, C = 12;
    const auto table = randu(size_t(V) * C, -1, 1, 3);
    const vector<int> ids = {3, 0, 9, 3};
    for (const Target& t : ctx.hosts()) {
      const vector<float> e = run_embedding(*t.be, ids, table, C);
      for (int m = 0; m < 4; m++) CHECK(same_bits(e.data() + m * C, table.data() + ids[size_t(m)] * C, C));
      CHECK_THROWS_CODE(run_embedding(*t.be, {1, -1}, table, C), ErrorCode::BadInput, "token id");
    }
  }
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  const int V = 61, C = 173, M = 9;
  const auto table = randn(size_t(V) * C, 1.0f, 71u);
  vector<int> ids = randi(size_t(M), 0, V - 1, 72u);
  ids[0] = 0;
  ids[1] = V - 1;
  check_bits("embedding", run_embedding(*g, ids, table, C), run_embedding(ctx.cpu(), ids, table, C));  // a copy
  // A negative id (the CPU throws) gives a zero row on the GPU rather than an out-of-bounds read.
  ids[2] = -5;
  const vector<float> z = run_embedding(*g, ids, table, C);
  CHECK(std::all_of(z.begin() + 2 * C, z.begin() + 3 * C, [](float x) { return x == 0.0f; }));
}

OP_CASE(add) {
  if (!ctx.eval()) return;
  const int64_t n = 100003;
  const auto a0 = randu(size_t(n), -1, 1, 4), b = randu(size_t(n), -1, 1, 5);
  vector<float> want(a0.size());
  for (size_t i = 0; i < a0.size(); i++) want[i] = a0[i] + b[i];  // one IEEE add per element
  for (const Target& t : ctx.all()) {
    Arena a(*t.be);
    float* da = a.put(a0);
    const float* db = a.put(b);
    float* out = a.alloc(a0.size());
    t.be->add(out, da, db, n);
    check_bits(t.name + " add", a.get(out, a0.size()), want);
    t.be->add(da, da, db, n);  // out aliases a (the residual add)
    check_bits(t.name + " add in place", a.get(da, a0.size()), want);
  }
}
