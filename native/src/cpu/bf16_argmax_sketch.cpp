// Building the int8 sketch of a bf16 matrix and its per-row slack (bf16_argmax_sketch.h).
#include "bf16_argmax_sketch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "thread_pool.h"

namespace dpo {
namespace {

double widen_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Row r's int8 values and scale, and its slack. With T = sum x_i w_i (real), E the fp32 dot of x and w, S the fp32
// dot of x and q, A = fl(S * scale) and e_i = w_i - scale * q_i (exact in double: 8 + 24 significant bits):
//   |E - T| <= g |x| |w|,  |S - sum x_i q_i| <= g |x| |q|,  |A - scale S| <= u scale |S|,  |scale sum x_i q_i - T| <=
//   |x| |e|
// (Cauchy-Schwarz; g = gamma_{K+2} with room, u = 2^-24), so |E - A| <= |x| (|e| + g |w| + (g + 2u) scale |q|).
void sketch_row(int8_t* q, float& scale, double& slack, const uint16_t* w, int64_t K) {
  double amax = 0.0;
  for (int64_t k = 0; k < K; k++) amax = std::max(amax, std::fabs(widen_bf16(w[k])));
  scale = amax > 0.0 ? float(amax / 127.0) : 1.0f;
  double e2 = 0.0, w2 = 0.0, q2 = 0.0;
  for (int64_t k = 0; k < K; k++) {
    const double v = widen_bf16(w[k]);
    const double r = std::clamp(std::nearbyint(v / double(scale)), -127.0, 127.0);
    q[k] = int8_t(r);
    const double e = v - double(scale) * r;
    e2 += e * e, w2 += v * v, q2 += r * r;
  }
  const double u = std::ldexp(1.0, -24), g = 2.0 * double(K + 2) * u;
  // (1 + 1e-6): the double arithmetic of this bound and of the caller's comparisons, far below it.
  slack = (std::sqrt(e2) + g * std::sqrt(w2) + (g + 2.0 * u) * double(scale) * std::sqrt(q2)) * (1.0 + 1e-6);
}

}  // namespace

std::unique_ptr<Bf16ArgmaxSketch> sketch_bf16_rows(const uint16_t* w, int64_t K, int64_t N) {
  for (int64_t i = 0; i < N * K; i++)
    if ((w[i] & 0x7f80u) == 0x7f80u) return nullptr;  // inf or NaN
  auto s = std::make_unique<Bf16ArgmaxSketch>();
  s->rows = N, s->cols = K;
  s->q.resize(size_t(N * K));
  s->scale.resize(size_t(N));
  s->slack.resize(size_t(N));
  parallel_for(N, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++)
      sketch_row(s->q.data() + r * K, s->scale[size_t(r)], s->slack[size_t(r)], w + r * K, K);
  });
  return s;
}

}  // namespace dpo
