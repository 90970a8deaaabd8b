// Cases of Backend::rmsnorm and rmsnorm_backward: the host backends against the double reference (row norms and
// Qwen3's per-head q/k norms, rstd included), the gradients (dx, and dw summed over rows / shared by heads) against
// finite differences, and CUDA against the CPU within rtol 1e-5 (its fixed-order block sums differ from the CPU's
// 16-lane loops by ulps), bitwise deterministic, with null rstd / dw, a row alone and in place giving the same bits.
#include <cmath>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

struct NormOut {
  vector<float> out, rstd;
};

NormOut run_rmsnorm(Backend& be, const vector<float>& x, const vector<float>& w, int M, int C, float eps) {
  Arena a(be);
  float* out = a.alloc(x.size());
  float* rstd = a.alloc(size_t(M));
  be.rmsnorm(out, rstd, a.put(x), a.put(w), M, C, eps);
  return {a.get(out, x.size()), a.get(rstd, size_t(M))};
}

// dx, dw accumulate into dx0, dw0 (an empty dw0 passes null).
NormOut run_rmsnorm_backward(Backend& be, const vector<float>& dx0, const vector<float>& dw0, const vector<float>& dy,
                             const vector<float>& x, const vector<float>& w, const vector<float>& rstd, int M, int C) {
  Arena a(be);
  float* dx = a.put(dx0);
  float* dw = dw0.empty() ? nullptr : a.put(dw0);
  be.rmsnorm_backward(dx, dw, a.put(dy), a.put(x), a.put(w), a.put(rstd), M, C);
  return {a.get(dx, dx0.size()), dw ? a.get(dw, dw0.size()) : vector<float>()};
}

vector<double> magnitudes(const vector<double>& ref) {
  vector<double> s(ref.size());
  for (size_t i = 0; i < ref.size(); i++) s[i] = std::fabs(ref[i]) + 1e-30;
  return s;
}

void cuda_forward_parity(const OpContext& ctx) {
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  struct Shape {
    int M, C;
  };
  // {6*16, 128}, {5*8, 64}: Qwen3's per-head q/k norms (rows of one head, C = head_dim).
  for (const Shape sh : {Shape{7, 173}, Shape{3, 4096}, Shape{5, 8}, Shape{6 * 16, 128}, Shape{5 * 8, 64}}) {
    const int M = sh.M, C = sh.C;
    std::printf("  M=%d C=%d\n", M, C);
    const auto x = randn(size_t(M) * C, 1.5f, 11u + C);
    const auto w = randu(size_t(C), 0.5f, 1.5f, 12u + C);
    const NormOut c = run_rmsnorm(ctx.cpu(), x, w, M, C, 1e-5f);
    const NormOut r = run_rmsnorm(*g, x, w, M, C, 1e-5f);
    check_near("out", r.out, c.out);
    check_near("rstd", r.rstd, c.rstd);
    Arena a(*g);
    float* dx = a.put(x);
    const float* dw = a.put(w);
    float* out = a.alloc(x.size());
    g->rmsnorm(out, nullptr, dx, dw, M, C, 1e-5f);  // rstd null
    check_bits("out with rstd null", a.get(out, x.size()), r.out);  // and deterministic
    // Row m alone (M = 1) gives the batch's bits.
    const int m = M / 2;
    const NormOut one = run_rmsnorm(*g, slice(x, size_t(m) * C, size_t(C)), w, 1, C, 1e-5f);
    check_bits("row alone", one.out, slice(r.out, size_t(m) * C, size_t(C)));
    check_bits("row alone rstd", one.rstd, slice(r.rstd, size_t(m), 1));
    // In place (out aliases x) gives the same bits.
    g->rmsnorm(dx, nullptr, dx, dw, M, C, 1e-5f);
    check_bits("in place", a.get(dx, x.size()), r.out);
  }
}

void cuda_backward_parity(const OpContext& ctx) {
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  struct Shape {
    int M, C;
  };
  for (const Shape sh : {Shape{37, 173}, Shape{4, 4096}, Shape{1, 8}, Shape{6 * 16, 128}, Shape{3 * 8, 64}}) {
    const int M = sh.M, C = sh.C;
    std::printf("  M=%d C=%d\n", M, C);
    const auto x = randn(size_t(M) * C, 1.5f, 21u + C);
    const auto w = randu(size_t(C), 0.5f, 1.5f, 22u + C);
    const auto dy = randn(x.size(), 1.0f, 23u + C);
    const auto dx0 = randn(x.size(), 0.1f, 24u + C);
    const auto dw0 = randn(size_t(C), 0.1f, 25u + C);
    const vector<float> rstd = run_rmsnorm(ctx.cpu(), x, w, M, C, 1e-5f).rstd;
    const NormOut c = run_rmsnorm_backward(ctx.cpu(), dx0, dw0, dy, x, w, rstd, M, C);
    const NormOut r = run_rmsnorm_backward(*g, dx0, dw0, dy, x, w, rstd, M, C);
    check_near("dx", r.out, c.out);
    check_near("dw", r.rstd, c.rstd);  // sums M rows (37) in another order than the CPU: still ulps
    const NormOut again = run_rmsnorm_backward(*g, dx0, dw0, dy, x, w, rstd, M, C);
    check_bits("dx again", again.out, r.out);
    check_bits("dw again", again.rstd, r.rstd);
    check_bits("dx with dw null", run_rmsnorm_backward(*g, dx0, {}, dy, x, w, rstd, M, C).out, r.out);
  }
}

}  // namespace

OP_CASE(rmsnorm) {
  if (!ctx.eval()) return;
  for (int C : {8, 64, 172, 1000}) {
    const int M = 3;
    const auto x = randu(size_t(M) * C, -3, 3, uint32_t(C)), w = randu(size_t(C), 0.5, 1.5, uint32_t(C + 1));
    vector<double> ref;
    ref_rmsnorm(ref, to_d(x), to_d(w), M, C, 1e-5);
    for (const Target& t : ctx.hosts()) {
      const NormOut r = run_rmsnorm(*t.be, x, w, M, C, 1e-5f);
      check_scaled(t.name + " rmsnorm C=" + std::to_string(C), r.out, ref, magnitudes(ref), 2e-6);
      for (int m = 0; m < M; m++) {
        double ss = 0;
        for (int c = 0; c < C; c++) ss += double(x[size_t(m) * C + c]) * x[size_t(m) * C + c];
        CHECK_CLOSE(r.rstd[size_t(m)], 1.0 / std::sqrt(ss / C + 1e-5), 0, 2e-6);
      }
    }
  }
  // Qwen3's q_norm / k_norm run as the row norm over M*H rows of HD.
  for (const int HD : {8, 64, 128}) {
    const int M = 5, H = 4;
    const auto x = randu(size_t(M) * H * HD, -3, 3, uint32_t(HD)), w = randu(size_t(HD), 0.5, 1.5, uint32_t(HD + 1));
    vector<double> ref;
    ref_head_norm(ref, to_d(x), to_d(w), M, H, HD, 1e-6);
    for (const Target& t : ctx.hosts())
      check_scaled(t.name + " q/k head norm HD=" + std::to_string(HD), run_rmsnorm(*t.be, x, w, M * H, HD, 1e-6f).out,
                   ref, magnitudes(ref), 2e-6);
  }
  cuda_forward_parity(ctx);
}

OP_CASE(rmsnorm_backward) {
  if (ctx.grad()) {
    {
      const int M = 3, C = 21;
      const float eps = 1e-5f;
      const auto x = randu(size_t(M) * C, -2, 2, 1), w = randu(C, 0.5, 1.5, 2), G = randu(size_t(M) * C, -1, 1, 3);
      auto xd = to_d(x), wd = to_d(w);
      vector<double> out;
      auto loss = [&] {
        ref_rmsnorm(out, xd, wd, M, C, double(eps));
        return dot_loss(out, G);
      };
      const auto gx = numeric_grad(xd, loss), gw = numeric_grad(wd, loss);
      const auto dx0 = randu(x.size(), -1, 1, 4), dw0 = randu(w.size(), -1, 1, 5);
      for (const Target& t : ctx.all()) {
        const vector<float> rstd = run_rmsnorm(*t.be, x, w, M, C, eps).rstd;
        const NormOut r = run_rmsnorm_backward(*t.be, dx0, dw0, G, x, w, rstd, M, C);
        check_grad(t.name + " rmsnorm dx", minus(r.out, dx0), gx);
        check_grad(t.name + " rmsnorm dw", minus(r.rstd, dw0), gw);
      }
    }
    {
      // dx per head, and dw summed over every head of every row (the weight is shared).
      const int M = 3, H = 3, HD = 8;
      const float eps = 1e-6f;
      const auto x = randu(size_t(M) * H * HD, -2, 2, 11), w = randu(HD, 0.5, 1.5, 12);
      const auto G = randu(x.size(), -1, 1, 13);
      auto xd = to_d(x), wd = to_d(w);
      vector<double> out;
      auto loss = [&] {
        ref_head_norm(out, xd, wd, M, H, HD, double(eps));
        return dot_loss(out, G);
      };
      const auto gx = numeric_grad(xd, loss), gw = numeric_grad(wd, loss);
      for (const Target& t : ctx.all()) {
        const vector<float> rstd = run_rmsnorm(*t.be, x, w, M * H, HD, eps).rstd;
        const NormOut r = run_rmsnorm_backward(*t.be, vector<float>(x.size(), 0.0f), vector<float>(w.size(), 0.0f), G,
                                               x, w, rstd, M * H, HD);
        check_grad(t.name + " head norm dx", r.out, gx);
        check_grad(t.name + " head norm dw", r.rstd, gw);
      }
    }
  }
  if (ctx.eval()) cuda_backward_parity(ctx);
}
