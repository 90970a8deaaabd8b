// bitsandbytes 0.43.1 AdamW(optim_bits=8) for one tensor (docs/reference/optimizer.md#8-bit-update):
// kOptimizerStatic8bit2StateBlockwise on blocks of 2048 when n >= 4096, kOptimizer32bit2State below. Scalar CPU
// reference of the kernels; blocks run in parallel.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include "core/fp_strict.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "quant/nf4.h"
#include "train/adam_math.h"
#include "train/adamw_8bit_lanes.h"
#include "train/optimizer.h"
#include "train/quantize_2d_count.h"

namespace dpo {

uint8_t quantize_2d(const float* code, float x, bool is_signed) { return adam::quantize_2d(code, x, is_signed); }

AdamW8bit::AdamW8bit(int64_t n) : n_(n) {
  if (n < 0) fail(ErrorCode::BadInput, "make_adamw_8bit: negative size " + std::to_string(n));
  if (blockwise()) {
    // docs/reference/optimizer.md#8-bit-state: bytes 0 with absmax 0, which dequantizes to code[0] * 0 = (-)0.
    state1_.assign(size_t(n), 0);
    state2_.assign(size_t(n), 0);
    absmax1_.assign(size_t(blocks()), 0.0f);
    absmax2_.assign(size_t(blocks()), 0.0f);
  } else {
    m32_.assign(size_t(n), 0.0f);
    v32_.assign(size_t(n), 0.0f);
  }
}

uint64_t AdamW8bit::state_bytes() const {
  if (!blockwise()) return uint64_t(n_) * 2 * sizeof(float);
  return uint64_t(n_) * 2 + uint64_t(blocks()) * 2 * sizeof(float);
}

float AdamW8bit::m_at(int64_t i) const {
  if (!blockwise()) return m32_[size_t(i)];
  return dynamic_map_signed()[state1_[size_t(i)]] * absmax1_[size_t(i / kAdam8bitBlockSize)];
}

float AdamW8bit::v_at(int64_t i) const {
  if (!blockwise()) return v32_[size_t(i)];
  return dynamic_map_unsigned()[state2_[size_t(i)]] * absmax2_[size_t(i / kAdam8bitBlockSize)];
}

void AdamW8bit::update(float* param, const float* grad, const AdamHyper& h) {
  // Optimizer2State: state["step"] += 1 before the kernel runs, lr = 0 steps included
  // (docs/reference/trainer.md#order-within-a-step).
  t_ += 1;
  const BnbAdamStepScalars s = bnb_adam_scalars(h, t_);
  if (blockwise())
    cpu::adamw_bnb8bit_step(param, state1_.data(), state2_.data(), absmax1_.data(), absmax2_.data(), grad, s, n_);
  else cpu::adamw_bnb32_step(param, m32_.data(), v32_.data(), grad, s, n_);
}

// The kernels' scalars: bnb hands the Python floats to the kernel as C floats, and the kernel computes
//   corr1 = 1 - powf(b1, t), corr2 = sqrtf(1 - powf(b2, t)), step_size = -lr*corr2/corr1
// (plain powf and '/' here; CUDA's __powf / __fdividef can differ in the last bits, the documented tolerance of a
// comparison with bnb itself, not of this code: every backend of ours applies these same host-computed values).
BnbAdamStepScalars bnb_adam_scalars(const AdamHyper& hyper, int64_t t) {
  const float lr = float(hyper.lr), beta1 = float(hyper.beta1), beta2 = float(hyper.beta2), eps = float(hyper.eps),
              wd = float(hyper.weight_decay);
  const float step = float(t);
  const float corr1 = 1.0f - std::pow(beta1, step);
  const float corr2 = std::sqrt(1.0f - std::pow(beta2, step));
  BnbAdamStepScalars s;
  s.beta1 = beta1;
  s.beta2 = beta2;
  s.w1 = 1.0f - beta1;
  s.w2 = 1.0f - beta2;
  s.step_size = (-lr * corr2) / corr1;
  s.eps_term = rn(corr2 * eps);
  s.decay = 1.0f - rn(lr * wd);
  s.apply_decay = wd > 0.0f;
  return s;
}

// n < min_8bit_size (4096): bnb keeps fp32 state1/state2 and calls kOptimizer32bit2State<ADAM> (adam::bnb32).
void cpu::adamw_bnb32_step(float* param, float* m, float* v, const float* grad, const BnbAdamStepScalars& s,
                           int64_t n) {
  for (int64_t i = 0; i < n; i++) param[i] = adam::bnb32(param[i], grad[i], m[i], v[i], s);  // < 4096: no pool
}

// kOptimizerStatic8bit2StateBlockwise<float, ADAM, 2048, 8> (docs/reference/optimizer.md#8-bit-update), one
// 2048-element block at a time:
//  pass 1: for every element, dequantize the state with the OLD absmax and update it (adam::bnb8_moments),
//          and reduce absmax1' = max|m|, absmax2' = max|v| over the block (fmaxf from -FLT_MAX);
//  pass 2: the parameter step of the elements with a finite gradient (adam::bnb8_param), then requantize m and v
//          with the NEW absmax (adam::bnb8_code1 / bnb8_code2).
// The new state is quantized with the NEW absmax, so the two passes cannot be merged.
// The kernel's tail: the last block's lanes past n are loaded with g = 0, state1 byte 128 and state2 byte 0 and
// take part in the block max (pad m = q1[128]*absmax1*b1, pad v = 0). bnb's Python side does not show it; it only
// matters when every real m of that block is 0 (e.g. all its gradients non-finite), and we fold it in likewise.
// The max is order-independent (fmax of non-negative values, NaN ignored), so any reduction order gives these bits.
void cpu::adamw_bnb8bit_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                             const float* grad, const BnbAdamStepScalars& s, int64_t n) {
  const float* q1 = dynamic_map_signed();    // m: signed dynamic map
  const float* q2 = dynamic_map_unsigned();  // v: unsigned dynamic map
  const int64_t blocks = (n + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize;
#if defined(__AVX2__)
  static const adam::OddCodeTable odd1(q1), odd2(q2);  // the maps never change
#endif
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    float m[kAdam8bitBlockSize], v[kAdam8bitBlockSize];  // the block's updated fp32 state (pass 1 -> pass 2)
    for (int64_t b = b0; b < b1; b++) {
      const int64_t e0 = b * kAdam8bitBlockSize;
      const int64_t len = std::min(kAdam8bitBlockSize, n - e0);
      uint8_t* c1 = state1 + e0;
      uint8_t* c2 = state2 + e0;
      const float* g = grad + e0;
      float* p = param + e0;
      const float a1 = absmax1[b], a2 = absmax2[b];

      // Pass 1: new state and the new block absmax.
      float max1 = -FLT_MAX, max2 = -FLT_MAX;
      int64_t j1 = 0;
#if defined(__AVX2__)
      adam::MomentLanes lanes1 = adam::lanes_of(-FLT_MAX), lanes2 = lanes1;
      for (; j1 + adam::kMomentLanes <= len; j1 += adam::kMomentLanes)
        adam::moments_lanes(m + j1, v + j1, g + j1, c1 + j1, c2 + j1, q1, q2, a1, a2, s, lanes1, lanes2);
      max1 = adam::lanes_max(lanes1), max2 = adam::lanes_max(lanes2);
#endif
      for (int64_t j = j1; j < len; j++) {
        adam::bnb8_moments(g[j], q1[c1[j]], a1, q2[c2[j]], a2, s, m[j], v[j]);
        max1 = std::fmax(max1, std::fabs(m[j]));
        max2 = std::fmax(max2, std::fabs(v[j]));
      }
      if (len < kAdam8bitBlockSize) {  // the padded lanes of the last block (see above)
        float pad_m, pad_v;
        adam::bnb8_moments(0.0f, q1[128], a1, q2[0], a2, s, pad_m, pad_v);
        max1 = std::fmax(max1, std::fabs(pad_m));
        max2 = std::fmax(max2, std::fabs(pad_v));
      }
      absmax1[b] = max1;
      absmax2[b] = max2;

      // Pass 2: parameter step, then requantize with the new absmax.
      int64_t j0 = 0;
#if defined(__AVX2__)
      // kQuantizeLanes elements at a time (16 with AVX-512, 8 with AVX2): the same per-element arithmetic.
      constexpr int64_t w = adam::kQuantizeLanes;
      static_assert(w == adam::kMomentLanes, "the parameter step and the requantization take the same lanes");
      for (; j0 + w <= len; j0 += w) {
        adam::param_lanes(p + j0, g + j0, m + j0, v + j0, s);
        adam::quantize_2d_lanes(c1 + j0, q1, odd1, m + j0, max1, true);
        adam::quantize_2d_lanes(c2 + j0, q2, odd2, v + j0, max2, false);
        for (int64_t j = j0; j < j0 + w; j++) c1[j] = adam::bnb8_sign_fix(q1, m[j], c1[j]);
      }
#endif
      for (int64_t j = j0; j < len; j++) {
        if (std::isfinite(g[j])) p[j] = adam::bnb8_param(p[j], m[j], v[j], s);
#if defined(__AVX512F__)
        c1[j] = adam::bnb8_sign_fix(q1, m[j], adam::quantize_2d_count(q1, odd1, fp::div(m[j], max1), true));
        c2[j] = adam::quantize_2d_count(q2, odd2, fp::div(v[j], max2), false);
#else
        c1[j] = adam::bnb8_code1(q1, m[j], max1);
        c2[j] = adam::bnb8_code2(q2, v[j], max2);
#endif
      }
    }
  });
}

std::unique_ptr<ParamOptimizer> make_adamw_8bit(int64_t n) { return std::make_unique<AdamW8bit>(n); }

}  // namespace dpo
