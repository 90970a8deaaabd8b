// Cases of Backend::rope and rope_backward: the host backends against the double formula on the same fp32
// frequencies (plain tables at two thetas, a random scaled table, yarn's cos/sin factor; position 0 the identity),
// the backward against finite differences and as the transpose (y maps back to s^2 x), a table of the wrong length
// refused on every backend, and CUDA against the CPU within 1e-6 (same inv_freq bits, angle and rounding: >= 99% of
// forward values bit-identical), deterministic.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "core/fp_strict.h"
#include "dpo/errors.h"
#include "model/rope_table.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

vector<float> run_rope(Backend& be, bool backward, const vector<float>& x, const vector<int>& pos, int M, int H, int HD,
                       const RopeTable& t) {
  Arena a(be);
  float* dx = a.put(x);
  if (backward) be.rope_backward(dx, a.put(pos), M, H, HD, t);
  else be.rope(dx, a.put(pos), M, H, HD, t);
  return a.get(dx, x.size());
}

// One direction on CUDA against the CPU backend, with the tables real configs produce.
void cuda_parity(const OpContext& ctx, bool bwd) {
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  // A scaled table (llama3's smoothed frequencies) and yarn's cos/sin factor ride along with the plain ones.
  ModelConfig llama3;
  llama3.head_dim = 64;
  llama3.rope_theta = 500000.0f;
  llama3.rope.type = RopeType::Llama3;
  llama3.rope.factor = 32.0;
  llama3.rope.original_max_position = 8192;
  RopeTable yarn = default_rope_table(128, 1e6f);
  yarn.attention_scaling = 1.1386294f;
  struct Shape {
    int M, H, HD;
    float theta;
    RopeTable table;
  };
  for (const Shape& sh : {Shape{9, 3, 8, 10000.0f, default_rope_table(8, 10000.0f)},
                          Shape{5, 4, 128, 1e6f, default_rope_table(128, 1e6f)},
                          Shape{3, 2, 80, 10000.0f, default_rope_table(80, 10000.0f)},
                          Shape{7, 2, 64, 500000.0f, rope_table(llama3, 1)}, Shape{4, 3, 128, 1e6f, yarn}}) {
    const int M = sh.M, H = sh.H, HD = sh.HD;
    const RopeTable& t = sh.table;
    std::printf("  M=%d H=%d HD=%d theta=%g scaling=%g\n", M, H, HD, double(sh.theta), double(t.attention_scaling));
    const auto x = randn(size_t(M) * H * HD, 1.0f, 31u + HD);
    vector<int> pos = randi(size_t(M), 0, 32767, 32u + HD);
    pos[0] = 0;
    if (M > 1) pos[1] = 1;
    const vector<float> ref = run_rope(ctx.cpu(), bwd, x, pos, M, H, HD, t);
    const vector<float> got = run_rope(*g, bwd, x, pos, M, H, HD, t);
    check_near(bwd ? "rope_backward" : "rope_forward", got, ref, 1e-6);  // same inv_freq, angle and rounding
    if (!bwd) {
      // Same inv_freq bits, the same fp32 angle, cos/sin in double rounded once, products rounded alone: the
      // forward is the CPU's bits except where CUDA's double sincos (2 ulp) and glibc's straddle an fp32
      // rounding boundary (~1e-8 per value).
      size_t same = 0;
      for (size_t i = 0; i < got.size(); i++) same += std::memcmp(&got[i], &ref[i], sizeof(float)) == 0;
      CHECK(same * 100 >= got.size() * 99);
    }
    check_bits("again", run_rope(*g, bwd, x, pos, M, H, HD, t), got);
  }
}

}  // namespace

OP_CASE(rope) {
  if (!ctx.eval()) return;
  const int M = 5, H = 3;
  const vector<int> pos = {0, 1, 7, 300, 4095};
  for (int HD : {8, 64, 128}) {
    for (float theta : {10000.0f, 1000000.0f}) {
      const auto x = randu(size_t(M) * H * HD, -2, 2, uint32_t(HD));
      vector<double> ref = to_d(x);
      ref_rope(ref, pos, M, H, HD, theta);
      const vector<double> scale(ref.size(), 4.0);  // |x1 c| + |x2 s| <= 4
      for (const Target& t : ctx.hosts()) {
        const vector<float> y = run_rope(*t.be, false, x, pos, M, H, HD, default_rope_table(HD, theta));
        check_scaled(t.name + " rope HD=" + std::to_string(HD), y, ref, scale, 3e-7);
        CHECK(same_bits(y.data(), x.data(), size_t(H) * HD));  // position 0 is the identity
      }
    }
  }
  // The host forward's exact arithmetic, whatever path a pair takes (16 pairs per vector step, the rest one by one:
  // HD = 40 has both): the fp32 angle, cos/sin in double rounded once, then scaled, each product rounded on its own,
  // then the sum, so that no fused multiply-add sneaks in. Zeros of both signs among the inputs.
  for (int HD : {8, 40, 64, 128}) {
    for (const float scaling : {1.0f, 1.1386294f}) {
      RopeTable table = default_rope_table(HD, 10000.0f);
      table.attention_scaling = scaling;
      auto x = randu(size_t(M) * H * HD, -2, 2, uint32_t(HD) + 7);
      for (size_t i = 0; i < x.size(); i += 5) x[i] = i % 10 == 0 ? 0.0f : -0.0f;
      vector<float> want = x;
      const int half = HD / 2;
      for (int m = 0; m < M; m++)
        for (int j = 0; j < half; j++) {
          const float a = float(pos[size_t(m)]) * table.inv_freq[size_t(j)];
          float c = float(std::cos(double(a))), sn = float(std::sin(double(a)));
          if (scaling != 1.0f) c = mul_rn(c, scaling), sn = mul_rn(sn, scaling);
          for (int h = 0; h < H; h++) {
            float* v = want.data() + (size_t(m) * H + h) * HD;
            const float x1 = v[j], x2 = v[j + half];
            v[j] = rn(mul_rn(x1, c) + mul_rn(-x2, sn));
            v[j + half] = rn(mul_rn(x2, c) + mul_rn(x1, sn));
          }
        }
      for (const Target& t : ctx.hosts())
        check_bits(t.name + " rope bits HD=" + std::to_string(HD), run_rope(*t.be, false, x, pos, M, H, HD, table),
                   want);
    }
  }
  // The inv_freq exponent is fp32 2j/HD (torch): j = 1, HD = 8, theta = 10000 -> 1/10000^0.25 = 0.1.
  for (const Target& t : ctx.hosts()) {
    const vector<float> v =
        run_rope(*t.be, false, {1, 0, 0, 0, 0, 0, 0, 0}, {10}, 1, 1, 8, default_rope_table(8, 10000.0f));
    CHECK_CLOSE(v[0], std::cos(10.0), 1e-6, 0);
    CHECK_CLOSE(v[4], std::sin(10.0), 1e-6, 0);
  }
  // Any table the config produces (llama3, yarn, ...) and yarn's cos/sin factor: the op against the double formula
  // on the same fp32 frequencies (the tables themselves are checked in test_rope_scaling).
  {
    const int M2 = 4, H2 = 2, HD = 16;
    const vector<int> pos2 = {0, 3, 900, 70000};
    RopeTable table;
    table.inv_freq = randu(size_t(HD / 2), 1e-6f, 1.0f, 41);
    for (const float scaling : {1.0f, 1.1386294f}) {
      table.attention_scaling = scaling;
      const auto x = randu(size_t(M2) * H2 * HD, -2, 2, 42);
      vector<double> ref = to_d(x);
      ref_rope(ref, pos2, M2, H2, HD, 0.0f, table.inv_freq, scaling);
      const vector<double> scale(ref.size(), 4.0 * scaling);
      vector<double> back = to_d(x);  // the backward is the transpose: with scaling s it maps y back to s^2 x
      for (double& b : back) b *= double(scaling) * scaling;
      for (const Target& t : ctx.hosts()) {
        const vector<float> y = run_rope(*t.be, false, x, pos2, M2, H2, HD, table);
        check_scaled(t.name + " scaled rope", y, ref, scale, 3e-7);
        check_scaled(t.name + " scaled rope transpose", run_rope(*t.be, true, y, pos2, M2, H2, HD, table), back, scale,
                     1e-6);
      }
    }
    // A table of the wrong length is refused by every backend before any work.
    const RopeTable short_table = default_rope_table(8, 10000.0f);
    for (const Target& t : ctx.all()) {
      CHECK_THROWS_CODE(run_rope(*t.be, false, vector<float>(size_t(HD), 0.0f), {0}, 1, 1, HD, short_table),
                        ErrorCode::BadInput, "frequency table");
      CHECK_THROWS_CODE(run_rope(*t.be, true, vector<float>(size_t(HD), 0.0f), {0}, 1, 1, HD, short_table),
                        ErrorCode::BadInput, "frequency table");
    }
  }
  cuda_parity(ctx, false);
}

OP_CASE(rope_backward) {
  if (ctx.eval()) cuda_parity(ctx, true);  // its transpose property is checked in the rope case
  if (!ctx.grad()) return;
  const int M = 3, H = 2, HD = 8;
  const vector<int> pos = {0, 5, 1234};
  const float theta = 10000.0f;
  const auto x = randu(size_t(M) * H * HD, -1, 1, 1), G = randu(x.size(), -1, 1, 2);
  auto xd = to_d(x);
  auto loss = [&] {
    vector<double> y = xd;
    ref_rope(y, pos, M, H, HD, theta);
    return dot_loss(y, G);
  };
  const auto gx = numeric_grad(xd, loss);
  for (const Target& t : ctx.all())
    check_grad(t.name + " rope dx", run_rope(*t.be, true, G, pos, M, H, HD, default_rope_table(HD, theta)), gx);
}
