// fp32 torch.optim.AdamW for one tensor, and torch.nn.utils.clip_grad_norm_ over all LoRA gradients (spec §9).
// Elementwise loops split over the CPU pool; every element's arithmetic is independent of the split.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/fp_strict.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "train/optimizer.h"

namespace dpo {
namespace {

constexpr int64_t kGrain = 16384;

}  // namespace

AdamW::AdamW(int64_t n) : n_(n) {
  if (n < 0) fail(ErrorCode::BadInput, "make_adamw: negative size " + std::to_string(n));
  m_.assign(size_t(n), 0.0f);
  v_.assign(size_t(n), 0.0f);
}

// torch 2.x _single_tensor_adamw / _multi_tensor_adamw (same math), non-capturable, amsgrad=False:
//   step += 1
//   param.mul_(1 - lr*wd)                                   # decoupled decay, BEFORE the Adam step
//   exp_avg.lerp_(grad, 1 - beta1)                          # m + w*(g - m), w = fl32(1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   bc1 = 1 - beta1**step; step_size = lr / bc1; bc2_sqrt = sqrt(1 - beta2**step)   # Python doubles
//   denom = exp_avg_sq.sqrt() / bc2_sqrt + eps              # fp32 tensor ops, scalars rounded to fp32
//   param.addcdiv_(exp_avg, denom, value=-step_size)        # p + (-step_size*m) / denom
// torch's vectorised lerp is an fmadd (w*(g-m) + m in one rounding), so we use std::fma there; every other op
// rounds separately. Bit-exactness with torch is not promised (its kernels may differ in the last bit), only its
// semantics; the fp32 state is what makes this the "adamw_torch" alternative to §10's 8-bit optimizer.
void AdamW::update(float* param, const float* grad, const AdamHyper& h) {
  t_ += 1;
  const double t = double(t_);
  const float decay = float(1.0 - h.lr * h.weight_decay);
  const bool do_decay = h.weight_decay != 0.0;
  const float w1 = float(1.0 - h.beta1);
  const float b2 = float(h.beta2), w2 = float(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  const float neg_step = float(-(h.lr / bc1));
  const float bc2_sqrt = float(std::sqrt(1.0 - std::pow(h.beta2, t)));
  const float eps = float(h.eps);
  float* m = m_.data();
  float* v = v_.data();
  parallel_for(n_, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const float g = grad[i];
      float p = param[i];
      if (do_decay) p = p * decay;
      m[i] = std::fma(w1, g - m[i], m[i]);
      v[i] = rn(v[i] * b2) + rn(rn(w2 * g) * g);
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      param[i] = p + rn(neg_step * m[i]) / denom;
    }
  });
}

std::unique_ptr<ParamOptimizer> make_adamw(int64_t n) { return std::make_unique<AdamW>(n); }

// torch clip_grad_norm_ (norm_type 2, foreach): norms = [||g_i||_2] (fp32 each), total = ||norms||_2 (fp32).
// torch reduces in fp32 with cascade sums; we accumulate each tensor's sum of squares in double, which is at least
// as accurate (the fp32-rounded results agree to ~1 ulp), and we round each per-tensor norm to fp32 as torch
// holds it. The double partial sums are taken over fixed 64Ki-element chunks and added in order, so the result
// never depends on the thread count.
float global_grad_norm(const std::vector<std::pair<const float*, int64_t>>& grads) {
  constexpr int64_t kChunk = 65536;
  double total_sq = 0.0;
  for (const auto& [g, n] : grads) {
    if (n <= 0) continue;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(size_t(chunks), 0.0);
    parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; c++) {
        const int64_t e0 = c * kChunk, e1 = std::min(n, e0 + kChunk);
        double s = 0.0;
        for (int64_t i = e0; i < e1; i++) s += double(g[i]) * double(g[i]);
        partial[size_t(c)] = s;
      }
    });
    double sq = 0.0;
    for (double s : partial) sq += s;
    const float norm_i = float(std::sqrt(sq));  // fp32 per-tensor norm, as torch.linalg.vector_norm returns it
    total_sq += double(norm_i) * double(norm_i);
  }
  return float(std::sqrt(total_sq));
}

// clip_coef = max_norm / (total_norm + 1e-6) in fp32; clamp(max=1.0) keeps NaN (a NaN norm poisons the grads,
// as in torch with error_if_nonfinite=False); grads *= coef.
float clip_grad_norm(const std::vector<std::pair<float*, int64_t>>& grads, float max_norm, float norm) {
  float coef = max_norm / (norm + 1e-6f);
  if (coef > 1.0f) coef = 1.0f;
  if (coef == 1.0f) return coef;  // x * 1 == x: skip the pass
  for (const auto& [g, n] : grads)
    parallel_for(n, kGrain, [&, g = g](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) g[i] *= coef;
    });
  return coef;
}

}  // namespace dpo
