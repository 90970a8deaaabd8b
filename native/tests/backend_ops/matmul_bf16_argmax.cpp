// Cases of the greedy tokens through an int8 sketch (sketch_bf16_argmax, matmul_bf16_argmax;
// docs/cpu-kernels.md#greedy-tokens-from-an-int8-sketch): the sketch's slack must bound the real distance between a
// sketched and an exact logit, and the tokens must be exactly those of matmul_bf16 followed by argmax_rows, on random
// shapes and where every row is a candidate and only the fp32 roundings of the exact logits decide.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "core/half.h"
#include "cpu/bf16_argmax_sketch.h"
#include "op_checks.h"
#include "random_data.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

vector<uint16_t> to_bf16(const vector<float>& v) {
  vector<uint16_t> b;
  for (float f : v) b.push_back(f32_to_bf16(f));
  return b;
}

// The tokens both ways on one backend: through the sketch (nullopt-like: ok = false when the op declined) and by
// the plain logits.
struct Tokens {
  bool ok = false;
  vector<int> sketched, plain;
  vector<float> logits;
};

Tokens run_both(Backend& be, const vector<float>& x, const vector<uint16_t>& w, int M, int K, int N,
                int sketch_rows = -1) {
  Arena a(be);
  const uint16_t* wd = a.put(w);
  const float* xd = a.put(x);
  Tokens t;
  // A sketch of the first sketch_rows rows only (a shape mismatch) when asked.
  const int rows = sketch_rows < 0 ? N : sketch_rows;
  const std::shared_ptr<const Bf16ArgmaxSketch> s = be.sketch_bf16_argmax(wd, K, rows);
  if (!s) return t;
  int* out = a.alloc<int>(size_t(M));
  t.ok = be.matmul_bf16_argmax(out, xd, wd, *s, M, K, N);
  if (t.ok) t.sketched = a.get(out, size_t(M));
  float* logits = a.alloc<float>(size_t(M) * N);
  int* plain = a.alloc<int>(size_t(M));
  be.matmul_bf16(logits, xd, wd, M, K, N);
  be.argmax_rows(plain, logits, M, N);
  t.plain = a.get(plain, size_t(M));
  t.logits = a.get(logits, size_t(M) * N);
  return t;
}

void check_tokens(const std::string& what, const Tokens& t) {
  if (!t.ok) {
    std::printf("  %s: the sketch path declined finite inputs\n", what.c_str());
    failures()++;
    return;
  }
  check_bits(what + " tokens", t.sketched, t.plain);
}

// Targets that keep a sketch (the CPU backends); the others are reported once.
vector<Target> sketching(const OpContext& ctx) {
  vector<Target> out;
  for (const Target& t : ctx.all()) {
    Arena a(*t.be);
    const vector<uint16_t> w = to_bf16(randu(64, -1, 1, 5));
    if (t.be->sketch_bf16_argmax(a.put(w), 16, 4)) out.push_back(t);
    else std::printf("  %s: no greedy sketch (generation computes every logit)\n", t.name.c_str());
  }
  return out;
}

}  // namespace

OP_CASE(sketch_bf16_argmax) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.hosts()) {
    // The slack bounds |x . w - scale (x . q)| in real arithmetic (here in double, far more precise than needed).
    const int K = 100, N = 40;
    vector<float> wf = randn(size_t(N) * K, 0.05f, 11);
    for (int k = 0; k < K; k++) wf[size_t(3) * K + k] = 0.0f;  // a zero row
    wf[size_t(7) * K + 5] = 3.0f;                               // a row with one large weight
    const vector<uint16_t> w = to_bf16(wf);
    Arena a(*t.be);
    const auto s = t.be->sketch_bf16_argmax(a.put(w), K, N);
    CHECK(s != nullptr);
    if (!s) continue;
    CHECK(s->rows == N && s->cols == K);
    int violations = 0;
    double closest = 1e30;  // the smallest slack / distance seen: the bound must hold, and not be absurdly loose
    for (uint32_t trial = 0; trial < 20; trial++) {
      const vector<float> x = randu(size_t(K), -2, 2, 100 + trial);
      double xx = 0.0;
      for (float v : x) xx += double(v) * v;
      for (int r = 0; r < N; r++) {
        double exact = 0.0, sketched = 0.0;
        for (int k = 0; k < K; k++) {
          exact += double(x[size_t(k)]) * bf16_to_f32(w[size_t(r) * K + k]);
          sketched += double(x[size_t(k)]) * s->q[size_t(r) * K + k];
        }
        const double dist = std::fabs(exact - sketched * s->scale[size_t(r)]);
        const double bound = std::sqrt(xx) * s->slack[size_t(r)];
        if (dist > bound + Bf16ArgmaxSketch::kAbsSlack) violations++;
        if (dist > 0) closest = std::min(closest, bound / dist);
      }
    }
    CHECK(violations == 0);
    CHECK(closest < 1e4);
    // No sketch where a weight is inf or NaN: no bound holds there.
    vector<uint16_t> bad = w;
    bad[17] = 0x7f80;  // +inf
    CHECK(t.be->sketch_bf16_argmax(a.put(bad), K, N) == nullptr);
    bad[17] = 0x7fc1;  // NaN
    CHECK(t.be->sketch_bf16_argmax(a.put(bad), K, N) == nullptr);
  }
}

OP_CASE(matmul_bf16_argmax) {
  if (!ctx.eval()) return;
  const vector<Target> targets = sketching(ctx);
  uint32_t seed = 900;
  // Random shapes: K with and without a 16-lane tail, one to a thousand rows, one to five x rows, x of any scale.
  for (int K : {1, 7, 16, 19, 64, 100, 256})
    for (int N : {1, 3, 61, 1000})
      for (int M : {1, 2, 5}) {
        const float xscale = seed % 3 == 0 ? 1e-3f : seed % 3 == 1 ? 1.0f : 1e3f;
        const vector<uint16_t> w = to_bf16(randn(size_t(N) * K, 0.05f, seed++));
        const vector<float> x = randu(size_t(M) * K, -xscale, xscale, seed++);
        for (const Target& t : targets)
          check_tokens(
              t.name + " random M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N),
              run_both(*t.be, x, w, M, K, N));
      }
  // Every row a permutation of one vector and x constant: the real logits are all equal, so every row is a candidate
  // and the fp32 roundings of each row's order decide; an exact copy of a row later on must lose its tie.
  {
    const int K = 96, N = 300, M = 2;
    const vector<float> base = randn(size_t(K), 0.3f, 31);
    vector<float> wf;
    std::mt19937 rng(32);
    vector<int> perm(static_cast<size_t>(K));
    std::iota(perm.begin(), perm.end(), 0);
    for (int r = 0; r < N - 1; r++) {
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int k = 0; k < K; k++) wf.push_back(base[size_t(perm[size_t(k)])]);
    }
    vector<uint16_t> w = to_bf16(wf);
    vector<float> x(size_t(M) * K, 0.37109375f);
    std::fill(x.begin() + K, x.end(), -1.3125f);
    for (const Target& t : targets) {
      Tokens first = run_both(*t.be, x, w, M, K, N - 1);
      // Make the winner of row 0 appear again at the end: the copy ties it and must not win.
      vector<uint16_t> w2 = w;
      if (first.ok)
        w2.insert(w2.end(), w.begin() + size_t(first.plain[0]) * K, w.begin() + size_t(first.plain[0] + 1) * K);
      else w2.insert(w2.end(), w.begin(), w.begin() + K);
      const Tokens t2 = run_both(*t.be, x, w2, M, K, N);
      check_tokens(t.name + " permuted rows", t2);
      // The case only tests something if the roundings differ between rows.
      const auto mm = std::minmax_element(t2.logits.begin(), t2.logits.begin() + N);
      CHECK(*mm.first < *mm.second);
      CHECK(t2.plain[0] < N - 1);
    }
  }
  for (const Target& t : targets) {
    const int K = 40, N = 50;
    const vector<uint16_t> w = to_bf16(randn(size_t(N) * K, 0.05f, 41));
    // x = 0: every logit is 0, the first index wins.
    Tokens z = run_both(*t.be, vector<float>(size_t(K), 0.0f), w, 1, K, N);
    check_tokens(t.name + " zero x", z);
    CHECK(z.ok && z.sketched[0] == 0);
    // inf or NaN in x, or logits near fp32's limit: declined (the plain ops define those results).
    vector<float> x = randu(size_t(K), -1, 1, 42);
    x[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK(!run_both(*t.be, x, w, 1, K, N).ok);
    x[3] = std::numeric_limits<float>::infinity();
    CHECK(!run_both(*t.be, x, w, 1, K, N).ok);
    x[3] = 0.5f;
    for (float& v : x) v *= 1e37f;
    CHECK(!run_both(*t.be, x, w, 1, K, N).ok);
    // A sketch of another shape: declined.
    CHECK(!run_both(*t.be, randu(size_t(K), -1, 1, 43), w, 1, K, N, N - 1).ok);
  }
}
