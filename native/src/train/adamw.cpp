// fp32 torch.optim.AdamW for one tensor, and torch.nn.utils.clip_grad_norm_ over all LoRA gradients
// (docs/reference/optimizer.md#torch-adamw, docs/reference/trainer.md#gradient-clipping). Elementwise loops split over
// the CPU pool; every element's arithmetic is independent of the split.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/fp_strict.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "train/adam_math.h"
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

// torch's scalars for step t (Python doubles, rounded to fp32 where the fp32 tensor ops take them):
//   bc1 = 1 - beta1**step; step_size = lr / bc1; bc2_sqrt = sqrt(1 - beta2**step)
// and 1 - lr*wd for the decay. rn() keeps lr*wd a rounded product as in Python (no fused multiply-subtract).
// Bit-exactness with torch is not promised (its kernels may differ in the last bit), only its semantics; the fp32
// state is what makes this the "adamw_torch" alternative to the 8-bit optimizer of docs/reference/optimizer.md.
AdamWStepScalars adamw_scalars(const AdamHyper& h, int64_t step) {
  const double t = double(step);
  AdamWStepScalars s;
  s.decay = float(1.0 - rn(h.lr * h.weight_decay));
  s.apply_decay = h.weight_decay != 0.0;
  s.w1 = float(1.0 - h.beta1);
  s.beta2 = float(h.beta2);
  s.w2 = float(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  s.neg_step = float(-(h.lr / bc1));
  s.bc2_sqrt = float(std::sqrt(1.0 - std::pow(h.beta2, t)));
  s.eps = float(h.eps);
  return s;
}

void AdamW::update(float* param, const float* grad, const AdamHyper& h) {
  t_ += 1;  // torch: step += 1 before the update
  cpu::adamw_step(param, m_.data(), v_.data(), grad, adamw_scalars(h, t_), n_);
}

std::unique_ptr<ParamOptimizer> make_adamw(int64_t n) { return std::make_unique<AdamW>(n); }

void cpu::adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWStepScalars& s,
                     int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) param[i] = adam::adamw(param[i], grad[i], exp_avg[i], exp_avg_sq[i], s);
  });
}

// torch clip_grad_norm_ (norm_type 2, foreach): norms = [||g_i||_2] (fp32 each), total = ||norms||_2 (fp32).
// torch reduces in fp32 with cascade sums; we accumulate each tensor's sum of squares in double, which is at least
// as accurate (the fp32-rounded results agree to ~1 ulp), and we round each per-tensor norm to fp32 as torch
// holds it. The double partial sums are taken over fixed 64Ki-element chunks and added in order, so the result
// never depends on the thread count. (Squares of floats are exact in double; only the order of the sums matters,
// which is why the CUDA op, summing in another fixed order, agrees to ~1e-16 before the rounding to fp32.)
float cpu::l2_norm(const float* g, int64_t n) {
  constexpr int64_t kChunk = 65536;
  if (n <= 0) return 0.0f;
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
  return float(std::sqrt(sq));  // fp32 per-tensor norm, as torch.linalg.vector_norm returns it
}

float norm_of_norms(const float* norms, size_t count) {
  double total_sq = 0.0;
  for (size_t i = 0; i < count; i++) total_sq += double(norms[i]) * double(norms[i]);
  return float(std::sqrt(total_sq));
}

float global_grad_norm(const std::vector<std::pair<const float*, int64_t>>& grads) {
  std::vector<float> norms;
  norms.reserve(grads.size());
  for (const auto& [g, n] : grads) norms.push_back(cpu::l2_norm(g, n));
  return norm_of_norms(norms.data(), norms.size());
}

// clip_coef = max_norm / (total_norm + 1e-6) in fp32; clamp(max=1.0) keeps NaN (a NaN norm poisons the grads,
// as in torch with error_if_nonfinite=False).
float clip_coefficient(float max_norm, float norm) {
  const float coef = max_norm / (norm + 1e-6f);
  return coef > 1.0f ? 1.0f : coef;
}

// grads *= coef, skipped when coef == 1 (x * 1 == x).
float clip_grad_norm(const std::vector<std::pair<float*, int64_t>>& grads, float max_norm, float norm) {
  const float coef = clip_coefficient(max_norm, norm);
  if (coef == 1.0f) return coef;
  for (const auto& [g, n] : grads)
    parallel_for(n, kGrain, [&, g = g](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) g[i] *= coef;
    });
  return coef;
}

}  // namespace dpo
