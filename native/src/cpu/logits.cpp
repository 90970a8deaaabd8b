// Vocabulary-side CPU ops: the fused log-softmax + label gather that DPO's log-probs need
// (docs/reference/dpo-loss.md#sequence-log-probs), its backward, and the greedy argmax of generation
// (docs/reference/generation.md#the-greedy-loop).
#include <cmath>
#include <string>

#include "dpo/errors.h"
#include "ops.h"
#include "thread_pool.h"
#include "vec.h"
#include "vec_exp.h"

namespace dpo::cpu {
namespace {

// max_v x_v, NaN ignored (a NaN x never compares greater), -inf for an empty or all -inf row. Sixteen lanes and four
// accumulators: the scalar loop was a chain of dependent max operations, one per 4 cycles, three times the time of
// the exp pass after it. A maximum is the same value in any order; only the sign of a zero maximum can differ, and
// row_lse's result does not depend on it (x - (+-0) and exp(+-0) agree, and so does +-0 + log(sum)).
float row_max(const float* x /*(V)*/, int64_t V) {
  f32x16 m[4];
  for (auto& a : m) a = splat16(-INFINITY);
  int64_t v = 0;
  for (; v + 4 * kLanes <= V; v += 4 * kLanes)
    for (int a = 0; a < 4; a++) m[a] = greater_of(load16(x + v + a * kLanes), m[a]);
  for (; v + kLanes <= V; v += kLanes) m[0] = greater_of(load16(x + v), m[0]);
  float lanes[kLanes];
  store16(lanes, greater_of(greater_of(m[0], m[1]), greater_of(m[2], m[3])));
  float mx = -INFINITY;
  for (float l : lanes) mx = l > mx ? l : mx;
  for (; v < V; v++) mx = x[v] > mx ? x[v] : mx;
  return mx;
}

// log(sum_v exp(x_v)) of one row, stable: fp32 max, then exp(x - max) summed in 16 fixed lanes (lane v % 16,
// increasing v, then reduce16), all fp32; the order depends only on V.
float row_lse(const float* x /*(V)*/, int64_t V) {
  const float mx = row_max(x, V);
  if (mx == -INFINITY) return -INFINITY;
  f32x16 acc{};
  const f32x16 shift = splat16(-mx);
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes) acc += exp16(load16(x + v) + shift);
  acc += exp16(load16_tail(x + v, V - v, -INFINITY) + shift);  // padded lanes add exp(-inf) = 0
  return mx + std::log(reduce16(acc));
}

}  // namespace

static void check_targets(const int* target, int M, int V) {
  for (int m = 0; m < M; m++)
    if (target[m] >= V)
      fail(ErrorCode::BadInput, "logsoftmax_gather: target " + std::to_string(target[m]) +
                                    " outside the vocabulary of " + std::to_string(V));
}

void logsoftmax_gather_forward(float* logp /*(M)*/, float* lse /*(M) or null*/, const float* logits /*(M,V)*/,
                               const int* target /*(M)*/, int M, int V) {
  check_targets(target, M, V);
  parallel_for(M, grain_for(20.0 * V), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      const float* x = logits + m * V;
      const float l = row_lse(x, V);
      if (lse) lse[m] = l;
      logp[m] = target[m] >= 0 ? x[target[m]] - l : 0.0f;
    }
  });
}

// d logp / d x_v = onehot(target)_v - softmax(x)_v with softmax = exp(x - lse); overwrites dlogits.
void logsoftmax_gather_backward(float* dlogits /*(M,V)*/, const float* dlogp /*(M)*/, const float* logits /*(M,V)*/,
                                const float* lse /*(M)*/, const int* target /*(M)*/, int M, int V) {
  check_targets(target, M, V);
  parallel_for(M, grain_for(20.0 * V), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      float* d = dlogits + m * V;
      const int tg = target[m];
      if (tg < 0) {
        for (int64_t v = 0; v < V; v++) d[v] = 0.0f;
        continue;
      }
      const float* x = logits + m * V;
      const float g = dlogp[m], l = lse[m];
      exp_shifted_scaled(d, x, l, -g, V);  // -g softmax
      d[tg] += g;
    }
  });
}

// First index of the maximum (strict >, so ties keep the earliest), as torch.argmax.
void argmax_rows(int* out /*(M)*/, const float* x /*(M,V)*/, int M, int V) {
  parallel_for(M, grain_for(double(V)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      const float* r = x + m * V;
      int best = 0;
      for (int v = 1; v < V; v++)
        if (r[v] > r[best]) best = v;
      out[m] = best;
    }
  });
}

}  // namespace dpo::cpu
