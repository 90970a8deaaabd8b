// Cases of Backend::logsoftmax_gather, logsoftmax_gather_backward and argmax_rows: the host backends against the
// double log-sum-exp (stable for logits near 90, ignored rows 0, a target outside the vocabulary refused), the
// gradient against finite differences (it overwrites), argmax's first index on ties; CUDA against the CPU: lse and
// logp within 1e-5 absolute (online max/sum vs two passes), masked -inf entries, NaN logits giving NaN (never dropped
// by the rescaling from -inf), a bad target giving NaN, rows alone giving the batch's bits, and argmax's rules for
// ties, NaN and all -inf rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "dpo/errors.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

struct LogpOut {
  vector<float> logp, lse;
};

LogpOut run_logsoftmax(Backend& be, const vector<float>& logits, const vector<int>& target, int V,
                       bool with_lse = true) {
  Arena a(be);
  const int M = int(target.size());
  float* logp = a.alloc(size_t(M));
  float* lse = with_lse ? a.alloc(size_t(M)) : nullptr;
  be.logsoftmax_gather(logp, lse, a.put(logits), a.put(target), M, V);
  return {a.get(logp, size_t(M)), with_lse ? a.get(lse, size_t(M)) : vector<float>()};
}

// Overwrites dlogits, which starts as `fill`.
vector<float> run_logsoftmax_backward(Backend& be, const vector<float>& dlogp, const vector<float>& logits,
                                      const vector<float>& lse, const vector<int>& target, int V, float fill) {
  Arena a(be);
  const int M = int(target.size());
  float* dl = a.put(vector<float>(size_t(M) * V, fill));
  be.logsoftmax_gather_backward(dl, a.put(dlogp), a.put(logits), a.put(lse), a.put(target), M, V);
  return a.get(dl, size_t(M) * V);
}

vector<int> run_argmax(Backend& be, const vector<float>& x, int M, int V) {
  Arena a(be);
  int* out = a.alloc<int>(size_t(M));
  be.argmax_rows(out, a.put(x), M, V);
  return a.get(out, size_t(M));
}

// The CUDA parity logits: random rows, row 1 widely spread, row 2 with masked (-inf) vocabulary entries.
struct LogitsData {
  vector<float> logits;
  vector<int> target;
};

LogitsData logits_data(int M, int V) {
  LogitsData d;
  d.logits = randn(size_t(M) * V, 3.0f, 81u + V);
  for (int v = 0; v < V; v++) d.logits[size_t(V) + v] *= 10.0f;                  // row 1: a wide spread
  for (int v = 0; v < V; v += 3) d.logits[size_t(2) * V + v] = -INFINITY;         // row 2: masked entries
  d.target = randi(size_t(M), 0, V - 1, 82u + V);
  d.target[2] = 1;              // a finite entry of row 2
  if (M > 3) d.target[3] = -1;  // ignored row
  return d;
}

struct Shape {
  int M, V;
};
const Shape kCudaShapes[] = {{5, 61}, {6, 1000}, {3, 61952}};

}  // namespace

// The host backends' row maximum is taken 16 lanes and four accumulators at a time with a scalar tail: a dominant
// logit in any position (each accumulator, the tail) must set the shift, or exp(x - max) overflows. A NaN anywhere
// gives NaN, an all -inf row -inf, and a row of signed zeros the bits of the same row of +0.
static void check_max_anywhere(const OpContext& ctx) {
  for (const Target& t : ctx.hosts()) {
    for (int V : {7, 16, 63, 64, 65, 100, 1000}) {
      for (int pos : {0, 1, 15, 16, 17, 31, 47, 48, 63, 64, 65, 99, V - 1}) {
        if (pos >= V) continue;
        auto row = randu(size_t(V), -1, 1, uint32_t(1000 * V + pos));
        row[size_t(pos)] = 120.0f;  // exp(120) overflows fp32: only a correct shift keeps lse finite
        const LogpOut r = run_logsoftmax(*t.be, row, {pos}, V);
        CHECK_CLOSE(r.lse[0], ref_logsumexp(to_d(row).data(), V), 0, 1e-6);
        CHECK(r.logp[0] > -1e-6f && r.logp[0] <= 0.0f);
      }
      auto nan_row = randu(size_t(V), -1, 1, uint32_t(V));
      nan_row[size_t(V / 2)] = std::numeric_limits<float>::quiet_NaN();
      CHECK(std::isnan(run_logsoftmax(*t.be, nan_row, {0}, V).lse[0]));
      const LogpOut inf = run_logsoftmax(*t.be, vector<float>(size_t(V), -INFINITY), {0}, V);
      CHECK(inf.lse[0] == -INFINITY);
      vector<float> zeros(size_t(V), 0.0f), signed_zeros(size_t(V), 0.0f);
      for (int v = 0; v < V; v += 2) signed_zeros[size_t(v)] = -0.0f;
      check_bits("signed zeros lse", run_logsoftmax(*t.be, signed_zeros, {0}, V).lse,
                 run_logsoftmax(*t.be, zeros, {0}, V).lse);
    }
  }
}

OP_CASE(logsoftmax_gather) {
  if (!ctx.eval()) return;
  for (int V : {512, 1000, 7}) {
    const int M = 4;
    auto logits = randu(size_t(M) * V, -8, 8, uint32_t(V));
    for (int v = 0; v < V; v++) logits[size_t(V) + v] += 90.0f;  // large logits: must stay stable in fp32
    const vector<int> target = {0, V - 1, -1, V / 2};
    for (const Target& t : ctx.hosts()) {
      const LogpOut r = run_logsoftmax(*t.be, logits, target, V);
      for (int m = 0; m < M; m++) {
        const vector<double> row = to_d(slice(logits, size_t(m) * V, size_t(V)));
        const double l = ref_logsumexp(row.data(), V);
        CHECK_CLOSE(r.lse[size_t(m)], l, 0, 1e-6);
        if (target[size_t(m)] < 0) CHECK(r.logp[size_t(m)] == 0.0f);
        else CHECK_CLOSE(r.logp[size_t(m)], logits[size_t(m) * V + target[size_t(m)]] - l, 2e-5, 1e-6);
      }
      CHECK_THROWS_CODE(run_logsoftmax(*t.be, logits, {0, V, 1, 2}, V), ErrorCode::BadInput, "outside the vocabulary");
    }
  }
  check_max_anywhere(ctx);
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  for (const Shape sh : kCudaShapes) {
    const int M = sh.M, V = sh.V;
    std::printf("  M=%d V=%d\n", M, V);
    const LogitsData d = logits_data(M, V);
    const LogpOut want = run_logsoftmax(ctx.cpu(), d.logits, d.target, V);
    const LogpOut got = run_logsoftmax(*g, d.logits, d.target, V);
    // lse is O(10); the online max/sum rounds differently from the CPU's two passes: absolute 1e-5 (a few ulps).
    for (int m = 0; m < M; m++) {
      CHECK_CLOSE(got.lse[size_t(m)], want.lse[size_t(m)], 1e-5, 1e-6);
      CHECK_CLOSE(got.logp[size_t(m)], want.logp[size_t(m)], 1e-5, 1e-6);
    }
    if (M > 3) CHECK(got.logp[3] == 0.0f);
    check_bits("logp with lse null", run_logsoftmax(*g, d.logits, d.target, V, false).logp, got.logp);
    // Row m alone gives the batch's bits.
    const int m = M - 1;
    const LogpOut one = run_logsoftmax(*g, slice(d.logits, size_t(m) * V, size_t(V)), slice(d.target, size_t(m), 1), V);
    check_bits("row alone logp", one.logp, slice(got.logp, size_t(m), 1));
    check_bits("row alone lse", one.lse, slice(got.lse, size_t(m), 1));
  }
  // A NaN logit makes the CPU's lse NaN (its exp joins the sum). On the GPU a thread's online (max, sum) starts at
  // (-inf, 0); a NaN met before the thread's first finite entry must not be dropped by the rescaling from -inf.
  {
    const int M = 4, V = 1000;
    auto logits = randn(size_t(M) * V, 1.0f, 87u);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    logits[0] = nan;                  // row 0: NaN as thread 0's first entry, finite entries after it
    logits[size_t(V) + 700] = nan;    // row 1: NaN as a thread's second entry (after a finite one)
    logits[size_t(2) * V + 3] = nan;  // row 2: NaN as thread 3's first entry, target elsewhere
    for (int v = 0; v < V; v++) logits[size_t(3) * V + v] = v % 2 ? -INFINITY : nan;  // row 3: nothing above -inf
    const vector<int> target = {5, 6, 7, 8};
    const LogpOut want = run_logsoftmax(ctx.cpu(), logits, target, V), got = run_logsoftmax(*g, logits, target, V);
    for (size_t i = 0; i < size_t(M); i++) {
      std::printf("  row %zu: lse %g (cpu %g), logp %g (cpu %g)\n", i, got.lse[i], want.lse[i], got.logp[i],
                  want.logp[i]);
      CHECK(std::isnan(got.lse[i]) == std::isnan(want.lse[i]) &&
            (std::isnan(want.lse[i]) || got.lse[i] == want.lse[i]));
      CHECK(std::isnan(got.logp[i]) == std::isnan(want.logp[i]));
    }
    CHECK(std::isnan(want.lse[0]) && std::isnan(want.lse[1]) && std::isnan(want.lse[2]) && want.lse[3] == -INFINITY);
  }
  // A target outside the vocabulary (the CPU throws BadInput) gives NaN on the GPU.
  const int V = 61;
  const LogpOut bad = run_logsoftmax(*g, randn(size_t(2) * V, 1.0f, 85u), {3, V}, V);
  CHECK(std::isfinite(bad.logp[0]) && std::isnan(bad.logp[1]));
}

OP_CASE(logsoftmax_gather_backward) {
  if (ctx.grad()) {
    const int M = 3, V = 40;
    const auto logits = randu(size_t(M) * V, -4, 4, 1), dlogp = randu(M, -1, 1, 2);
    const vector<int> target = {3, -1, 39};
    auto xd = to_d(logits);
    auto loss = [&] {
      double s = 0;
      for (int m = 0; m < M; m++) {
        if (target[size_t(m)] < 0) continue;
        const double* row = xd.data() + size_t(m) * V;
        s += dlogp[size_t(m)] * (row[target[size_t(m)]] - ref_logsumexp(row, V));
      }
      return s;
    };
    const auto gx = numeric_grad(xd, loss);
    for (const Target& t : ctx.all()) {
      const vector<float> lse = run_logsoftmax(*t.be, logits, target, V).lse;
      // Overwritten, not accumulated.
      check_grad(t.name + " logsoftmax dlogits", run_logsoftmax_backward(*t.be, dlogp, logits, lse, target, V, 123.0f),
                 gx);
    }
  }
  if (!ctx.eval()) return;
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  for (const Shape sh : kCudaShapes) {
    const int M = sh.M, V = sh.V;
    std::printf("  M=%d V=%d\n", M, V);
    const LogitsData d = logits_data(M, V);
    const vector<float> lse = run_logsoftmax(ctx.cpu(), d.logits, d.target, V).lse;
    // Overwrites (the buffer starts with garbage), with the CPU's lse as input to both.
    const auto dlogp = randn(size_t(M), 1.0f, 83u + V);
    const vector<float> want = run_logsoftmax_backward(ctx.cpu(), dlogp, d.logits, lse, d.target, V, 7.0f);
    const vector<float> got = run_logsoftmax_backward(*g, dlogp, d.logits, lse, d.target, V, -3.0f);
    check_near("dlogits", got, want);
    check_bits("dlogits again", run_logsoftmax_backward(*g, dlogp, d.logits, lse, d.target, V, -3.0f), got);
  }
  // A target outside the vocabulary gives NaN gradients on the GPU.
  const int M = 2, V = 61;
  const auto logits = randn(size_t(M) * V, 1.0f, 85u);
  const vector<int> target = {3, V};
  const vector<float> lse = run_logsoftmax(*g, logits, target, V).lse;
  const vector<float> dl = run_logsoftmax_backward(*g, {1.0f, 1.0f}, logits, lse, target, V, 0.0f);
  CHECK(std::isfinite(dl[0]) && std::isnan(dl[size_t(V)]));
}

OP_CASE(argmax_rows) {
  if (!ctx.eval()) return;
  // First index on ties, on the host backends.
  for (int V : {512, 1000, 7}) {
    const int M = 4;
    auto x = randu(size_t(M) * V, -8, 8, uint32_t(V));
    x[2] = x[5] = 1000.0f;
    x[size_t(V) + 1] = x[size_t(V) + V - 1] = 1000.0f;
    for (const Target& t : ctx.hosts()) {
      const vector<int> am = run_argmax(*t.be, x, M, V);
      CHECK(am[0] == 2);
      CHECK(am[1] == 1);
      for (int m = 2; m < M; m++) {
        int best = 0;
        for (int v = 1; v < V; v++)
          if (x[size_t(m) * V + v] > x[size_t(m) * V + best]) best = v;
        CHECK(am[size_t(m)] == best);
      }
    }
  }
  // Ties, all equal, NaN entries (never win; a NaN first stays 0 as the CPU scan never leaves it), all -inf.
  Backend* g = ctx.cuda_or_skip();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Shape sh : {Shape{7, 1000}, Shape{7, 61}, Shape{7, 61952}}) {
    const int M = sh.M, V = sh.V;
    auto x = randn(size_t(M) * V, 1.0f, 91u + V);
    auto row = [&](int m) { return x.data() + size_t(m) * V; };
    row(0)[17] = 9.0f;
    row(0)[V - 2] = 9.0f;  // a tie: the first index wins
    std::fill(row(1), row(1) + V, 0.5f);  // all equal: 0
    row(2)[5] = nan;
    row(2)[V - 1] = 8.0f;  // NaN ignored
    row(3)[0] = nan;  // NaN first: 0
    row(3)[V / 2] = 8.0f;
    std::fill(row(4), row(4) + V, -INFINITY);  // all -inf: 0
    std::fill(row(5), row(5) + V, -INFINITY);
    row(5)[V - 1] = -1e30f;
    const vector<int> ref = run_argmax(ctx.cpu(), x, M, V);
    CHECK(ref[0] == 17 && ref[1] == 0 && ref[2] == V - 1 && ref[3] == 0 && ref[4] == 0 && ref[5] == V - 1);
    for (const Target& t : ctx.all()) check_bits(t.name + " argmax", run_argmax(*t.be, x, M, V), ref);
  }
  (void)g;
}
