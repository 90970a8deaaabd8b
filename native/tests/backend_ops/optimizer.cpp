// Cases of the optimizer ops (Backend::l2_norm, adamw_step, adamw_bnb32_step, adamw_bnb8bit_step) over several steps
// with the scalars the optimizer classes compute (train/optimizer.h: varying lr, weight decay, non-finite gradients,
// an all-zero state block, partial tail blocks): the host backends against double-precision Adam (torch's decay before
// the step, bnb's after; the 8-bit params within 5% of the summed lr, the state error bound of test_optimizer), and
// the CUDA backend against the CPU bit for bit (the same train/adam_math.h arithmetic on scalars from the host; only
// NaN payloads may differ) and, for l2_norm (double sums of exact squares in another fixed order), within 1e-6.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "adam_test_data.h"
#include "backend_ops/registry.h"
#include "op_checks.h"
#include "random_data.h"
#include "train/optimizer.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

enum class Kind { AdamW, Bnb32, Bnb8 };

// One tensor's parameter and optimizer state on one backend, zero-initialised as the optimizer classes do; step()
// runs one op with the scalars of step t.
struct Stepper {
  Backend& be;
  Kind kind;
  int64_t n;
  int64_t t = 0;
  Arena a;
  float *p, *g, *m = nullptr, *v = nullptr, *absmax1 = nullptr, *absmax2 = nullptr;
  uint8_t *s1 = nullptr, *s2 = nullptr;

  Stepper(Backend& b, Kind k, const vector<float>& p0) : be(b), kind(k), n(int64_t(p0.size())), a(b) {
    p = a.put(p0);
    g = a.alloc(p0.size());
    if (kind == Kind::Bnb8) {
      const size_t blocks = size_t((n + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize);
      s1 = a.put(vector<uint8_t>(p0.size(), 0));
      s2 = a.put(vector<uint8_t>(p0.size(), 0));
      absmax1 = a.put(vector<float>(blocks, 0.0f));
      absmax2 = a.put(vector<float>(blocks, 0.0f));
    } else {
      m = a.put(vector<float>(p0.size(), 0.0f));
      v = a.put(vector<float>(p0.size(), 0.0f));
    }
  }
  void step(const vector<float>& grad, const AdamHyper& h) {
    be.upload(g, grad.data(), grad.size() * sizeof(float));
    t++;
    if (kind == Kind::AdamW) be.adamw_step(p, m, v, g, adamw_scalars(h, t), n);
    else if (kind == Kind::Bnb32) be.adamw_bnb32_step(p, m, v, g, bnb_adam_scalars(h, t), n);
    else be.adamw_bnb8bit_step(p, s1, s2, absmax1, absmax2, g, bnb_adam_scalars(h, t), n);
  }
  vector<float> param() { return a.get(p, size_t(n)); }
  // Every state buffer, as floats (codes widened), in a fixed order: for bitwise comparisons.
  vector<vector<float>> state() {
    if (kind != Kind::Bnb8) return {a.get(m, size_t(n)), a.get(v, size_t(n))};
    const size_t blocks = size_t((n + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize);
    const vector<uint8_t> c1 = a.get(s1, size_t(n)), c2 = a.get(s2, size_t(n));
    return {vector<float>(c1.begin(), c1.end()), vector<float>(c2.begin(), c2.end()), a.get(absmax1, blocks),
            a.get(absmax2, blocks)};
  }
};

const char* kind_name(Kind k) { return k == Kind::AdamW ? "adamw" : k == Kind::Bnb32 ? "bnb32" : "bnb8bit"; }

// Five steps (lr 0 first, as the schedule does), step 2 with non-finite gradients and an all-zero second block.
const double kLrs[5] = {0.0, 1e-2, 3e-3, 2e-2, 5e-3};
vector<float> step_grads(size_t n, int s) {
  vector<float> g = grads_for(n, s == 3 ? 1e-3f : 1.0f, 700u + uint32_t(s));
  if (s == 2) {
    g[n / 3] = std::numeric_limits<float>::quiet_NaN();
    g[n - 1] = std::numeric_limits<float>::infinity();
    if (n > 4096)
      for (size_t i = 2048; i < 4096; i++) g[i] = 0.0f;
  }
  return g;
}

// CUDA against the CPU after every step: params and state bit for bit (any NaN equal to any NaN).
void cuda_parity(const OpContext& ctx, Kind kind, const vector<size_t>& sizes, const vector<double>& wds) {
  Backend* gpu = ctx.cuda_or_skip();
  if (!gpu) return;
  for (const size_t n : sizes)
    for (const double wd : wds) {
      std::printf("  %s n=%zu wd=%g\n", kind_name(kind), n, wd);
      const vector<float> p0 = randu(n, -1.0f, 1.0f, 11u + uint32_t(n));
      Stepper cpu(ctx.cpu(), kind, p0), dev(*gpu, kind, p0);
      for (int s = 0; s < 5; s++) {
        const vector<float> g = step_grads(n, s);
        cpu.step(g, hyper(kLrs[s], wd));
        dev.step(g, hyper(kLrs[s], wd));
        check_bits("param", dev.param(), cpu.param(), true);
        const auto want = cpu.state(), got = dev.state();
        for (size_t i = 0; i < want.size(); i++) check_bits("state " + std::to_string(i), got[i], want[i], true);
      }
    }
}

// The host backends against double Adam over five finite steps; the fp32 tolerances of test_optimizer.
void host_reference(const OpContext& ctx, Kind kind) {
  const size_t n = 3000;
  const vector<float> p0 = randu(n, -1.0f, 1.0f, 1);
  for (const Target& t : ctx.hosts()) {
    Stepper st(*t.be, kind, p0);
    RefAdam ref(p0);
    for (int s = 0; s < 5; s++) {
      const vector<float> g = grads_for(n, s == 3 ? 1e-3f : 1.0f, 100u + uint32_t(s));
      const AdamHyper h = hyper(kLrs[s], 0.1);
      st.step(g, h);
      ref.step(g, kind == Kind::AdamW ? h : as_floats(h), /*decay_first=*/kind == Kind::AdamW);
      // fp32 vs double: a few roundings of O(1) params per step (~1e-7 absolute); m and v are built from terms of
      // ~0.1 |g| and ~1e-3 g^2, and m may cancel towards 0 between steps (hence the floors).
      CHECK(count_far((t.name + " " + kind_name(kind) + " p").c_str(), st.param().data(), ref.p, 2e-7, 1e-6) == 0);
      const auto state = st.state();
      CHECK(count_far("m", state[0].data(), ref.m, 1e-7, 1e-6) == 0);
      CHECK(count_far("v", state[1].data(), ref.v, 2e-9, 1e-6) == 0);
      if (s == 0) check_bits(t.name + " lr 0 leaves params", st.param(), p0);
    }
  }
}

}  // namespace

OP_CASE(l2_norm) {
  if (!ctx.eval()) return;
  auto run = [](Backend& be, const vector<float>& x) {
    Arena a(be);
    float* out = a.alloc(2);
    const float* dx = a.put(x);
    be.l2_norm(out, dx, int64_t(x.size()));
    be.l2_norm(out + 1, dx, int64_t(x.size()));  // the same bits again
    return a.get(out, 2);
  };
  // The fp32 rounding of the exact (double) norm, within half an ulp and a little; n = 0 gives 0.
  for (const Target& t : ctx.hosts())
    for (const size_t n : {size_t(0), size_t(1), size_t(1000), size_t(3 * 65536 + 5)}) {
      vector<float> x = randu(n, -1.0f, 1.0f, 21u + uint32_t(n));
      if (n > 5) x[n / 2] = 1e-30f, x[n / 3] = 1e20f;  // a wide range of magnitudes
      double ss = 0;
      for (float f : x) ss += double(f) * f;
      const vector<float> got = run(*t.be, x);
      CHECK_CLOSE(got[0], std::sqrt(ss), 0.0, 1e-7);
      CHECK(got[0] == got[1]);
    }
  // Non-finite gradients give a non-finite norm (as in torch), on every backend.
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    vector<float> x = randu(5000, -1.0f, 1.0f, 3u);
    x[1234] = bad;
    const float want = run(ctx.cpu(), x)[0];
    CHECK(std::isnan(bad) ? std::isnan(want) : std::isinf(want));
    for (const Target& t : ctx.all()) CHECK(same_or_nan(run(*t.be, x)[0], want));
  }
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  int exact = 0, total = 0;
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(1000), int64_t(2049), int64_t(3 * 65536 + 5),
                          int64_t(1 << 22) + 3, int64_t(27'000'001)}) {
    vector<float> x = randu(size_t(n), -1.0f, 1.0f, 21u + uint32_t(n));
    if (n > 5) x[size_t(n / 2)] = 1e-30f, x[size_t(n / 3)] = 1e20f;
    const float want = run(ctx.cpu(), x)[0];
    const vector<float> got = run(*g, x);
    std::printf("  n=%lld: %.9g, cpu %.9g\n", static_cast<long long>(n), double(got[0]), double(want));
    CHECK_CLOSE(got[0], want, 0.0, 1e-6);
    CHECK(same_or_nan(got[0], got[1]));
    exact += same_or_nan(got[0], want), total++;
  }
  std::printf("  %d of %d norms bit-identical to the CPU's\n", exact, total);
}

OP_CASE(adamw_step) {
  if (!ctx.eval()) return;
  host_reference(ctx, Kind::AdamW);
  cuda_parity(ctx, Kind::AdamW, {1, 1000, 300001}, {0.0, 0.1});
}

// bnb's 32-bit kernel (tensors below kAdam8bitMinSize).
OP_CASE(adamw_bnb32_step) {
  if (!ctx.eval()) return;
  host_reference(ctx, Kind::Bnb32);
  cuda_parity(ctx, Kind::Bnb32, {1000}, {0.0, 0.01});
}

// bnb's 8-bit blockwise kernel. 4096: the smallest blockwise tensor; 2048*3+17: a partial tail block (padded lanes);
// 262144: a Breeze LoRA A (r64 x 4096), 128 blocks.
OP_CASE(adamw_bnb8bit_step) {
  if (!ctx.eval()) return;
  // Params against unquantized Adam: the 8-bit state perturbs each move by a few percent of lr at most, so 5% of
  // the summed lr bounds the accumulated error (test_optimizer derives the bound); the state decodes to m, v.
  const size_t n = 5000;
  const vector<float> p0 = randu(n, -1.0f, 1.0f, 4);
  const double lrs[4] = {0.0, 1e-3, 2e-3, 1e-3}, wds[4] = {0.0, 0.0, 0.01, 0.0};
  for (const Target& t : ctx.hosts()) {
    Stepper st(*t.be, Kind::Bnb8, p0);
    RefAdam ref(p0);
    double lr_sum = 0.0;
    for (int s = 0; s < 4; s++) {
      const vector<float> g = grads_for(n, s == 2 ? 0.1f : 1.0f, 300u + uint32_t(s));
      st.step(g, hyper(lrs[s], wds[s]));
      ref.step(g, as_floats(hyper(lrs[s], wds[s])), /*decay_first=*/false);
      lr_sum += lrs[s];
      CHECK(count_far((t.name + " bnb8bit p").c_str(), st.param().data(), ref.p, 0.05 * lr_sum + 1e-7, 0.0) == 0);
    }
  }
  cuda_parity(ctx, Kind::Bnb8, {4096, 2048 * 3 + 17, 262144}, {0.0, 0.01});
}
