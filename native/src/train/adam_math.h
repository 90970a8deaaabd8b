// The per-element arithmetic of the optimizers (docs/reference/trainer.md, docs/reference/optimizer.md), written once
// for the CPU reference (adamw.cpp, adamw_8bit.cpp) and the CUDA kernels (cuda/optimizer.cu). Every fp32 operation is
// one core/fp_ops.h call in the reference's order, rounded on its own unless the reference fuses it, so both backends
// produce the same bits from the same host-computed scalars (AdamWStepScalars, BnbAdamStepScalars in dpo/backend.h).
// Plain C++ for the host; nvcc compiles the same functions for the device.
#pragma once
#include <cstdint>

#include "core/fp_ops.h"
#include "dpo/backend.h"

namespace dpo::adam {

// torch 2.x _single_tensor_adamw / _multi_tensor_adamw (same math), non-capturable, amsgrad=False, one element:
//   param.mul_(1 - lr*wd)                                   # decoupled decay, BEFORE the Adam step
//   exp_avg.lerp_(grad, 1 - beta1)                          # m + w*(g - m), w = fl32(1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   denom = exp_avg_sq.sqrt() / bc2_sqrt + eps
//   param.addcdiv_(exp_avg, denom, value=-step_size)        # p + (-step_size*m) / denom
// torch's vectorised lerp is an fmadd (w*(g-m) + m in one rounding), hence fma there; every other op rounds
// separately. Returns the new param; m and v are updated.
DPO_HD float adamw(float p, float g, float& m, float& v, const AdamWStepScalars& s) {
  if (s.apply_decay) p = fp::mul(p, s.decay);
  m = fp::fma(s.w1, fp::sub(g, m), m);
  v = fp::add(fp::mul(v, s.beta2), fp::mul(fp::mul(s.w2, g), g));
  const float denom = fp::add(fp::div(fp::sqrt(v), s.bc2_sqrt), s.eps);
  return fp::add(p, fp::div(fp::mul(s.neg_step, m), denom));
}

// bnb kOptimizer32bit2State<ADAM> (tensors below min_8bit_size), one element, max_unorm = 0, skip_zeros = False:
//   m = m*b1 + (1-b1)*g ;  v = v*b2 + (1-b2)*(g*g)
//   p = p + step_size * (m / (sqrtf(v) + eps*corr2)) ;  if wd > 0: p *= 1 - lr*wd    (decay AFTER the step)
// No finiteness test: a NaN/inf gradient flows into m, v and p, as in bnb. Returns the new param.
DPO_HD float bnb32(float p, float g, float& m, float& v, const BnbAdamStepScalars& s) {
  m = fp::add(fp::mul(m, s.beta1), fp::mul(s.w1, g));
  v = fp::add(fp::mul(v, s.beta2), fp::mul(s.w2, fp::mul(g, g)));
  p = fp::add(p, fp::mul(s.step_size, fp::div(m, fp::add(fp::sqrt(v), s.eps_term))));
  return s.apply_decay ? fp::mul(p, s.decay) : p;
}

// kOptimizerStatic8bit2StateBlockwise pass 1, one element: the new state from the dequantized old one
// (old_m = q1[c1]*absmax1, old_v = q2[c2]*absmax2, the OLD block scales):
//   finite g:  v = old_v*b2 + ((1-b2)*g)*g ;  m = old_m*b1 + (1-b1)*g          else: m = v = 0
// The kernel's padded tail lanes (g = 0, codes 128 / 0) run the finite branch too.
DPO_HD void bnb8_moments(float g, float q1c, float absmax1, float q2c, float absmax2, const BnbAdamStepScalars& s,
                         float& m, float& v) {
  if (fp::finite(g)) {
    v = fp::add(fp::mul(fp::mul(q2c, absmax2), s.beta2), fp::mul(fp::mul(s.w2, g), g));
    m = fp::add(fp::mul(fp::mul(q1c, absmax1), s.beta1), fp::mul(s.w1, g));
  } else {
    m = 0.0f;
    v = 0.0f;
  }
}

// Pass 2's parameter step for an element with a finite gradient (the others keep their param):
//   p = p + step_size * (m / (sqrtf(v) + corr2*eps)) ;  if wd > 0: p *= 1 - lr*wd
DPO_HD float bnb8_param(float p, float m, float v, const BnbAdamStepScalars& s) {
  p = fp::add(p, fp::mul(s.step_size, fp::div(m, fp::add(fp::sqrt(v), s.eps_term))));
  return s.apply_decay ? fp::mul(p, s.decay) : p;
}

// bnb quantize_2D<SIGNED> (kernels.cu L413), literally. It is dQuantize<0>'s
// (docs/reference/nf4.md#double-quantisation) binary search with two differences in form:
// - the first level reads "quadrants" {code[63], code[127], code[191]} (copied to registers in the kernel) instead
//   of code[pivot]; these are the same entries dQuantize would read (127, then 63 or 191);
// - the initial lower bound is -1 (signed) or 0 (unsigned) and, unlike dQuantize, is never replaced by code[0]
//   (nor the upper bound 1.0 by code[255]).
// Neither changes a result for the bnb maps: the bounds only matter when the search never turned (pivot 0 or
// 254), where every outcome is index 0, resp. code[255] == 1.0 anyway. test_optimizer checks this against
// dynamic_code(). NaN compares false everywhere and lands on index 0.
// code: a sorted 256-entry map (signed or unsigned dynamic map); x: value / absmax.
DPO_HD uint8_t quantize_2d(const float* code, float x, bool is_signed) {
  const float quadrants[3] = {code[63], code[127], code[191]};
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = is_signed ? -1.0f : 0.0f;
  float upper = 1.0f;
  float val = quadrants[1];
  int local_pivot = 1, offset = 1;
  for (int i = 64; i > 0; i >>= 1) {  // steps 64, 32, ..., 1
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
      local_pivot += offset;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
      local_pivot -= offset;
    }
    val = i >= 64 ? quadrants[local_pivot] : code[pivot];
    offset -= 1;
  }
  if (x > val) {
    const float midpoint = fp::mul(fp::add(upper, val), 0.5f);
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = fp::mul(fp::add(lower, val), 0.5f);
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

// Pass 2's requantization of m with the NEW block scale: quantize_2D<signed>(m / absmax1'), then "make sure state1
// term has still the same sign after quantization": a code whose sign differs from m's moves one step towards m's
// sign, in uint8 arithmetic (0 - 1 wraps to 255). An all-zero block (absmax1' = 0) gives 0/0 = NaN -> index 0 ->
// 255 by the sign fix, which dequantizes to 1.0 * 0.
DPO_HD uint8_t bnb8_sign_fix(const float* q1, float m, uint8_t c) {
  if (fp::sign(q1[c]) != fp::sign(m)) c = uint8_t(m > 0.0f ? c + 1 : c - 1);
  return c;
}
DPO_HD uint8_t bnb8_code1(const float* q1, float m, float absmax1) {
  return bnb8_sign_fix(q1, m, quantize_2d(q1, fp::div(m, absmax1), true));
}

// v >= 0 needs no sign fix; an all-zero block's NaN stays at index 0.
DPO_HD uint8_t bnb8_code2(const float* q2, float v, float absmax2) {
  return quantize_2d(q2, fp::div(v, absmax2), false);
}

}  // namespace dpo::adam
