// bitsandbytes 0.43.1 AdamW(optim_bits=8) for one tensor (spec §10): kOptimizerStatic8bit2StateBlockwise on blocks
// of 2048 when n >= 4096, kOptimizer32bit2State below. Scalar CPU reference of the kernels; blocks run in parallel.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include "core/fp_strict.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "quant/nf4.h"
#include "train/optimizer.h"

namespace dpo {
namespace {

// The kernel's hyperparameters: bnb hands the Python floats to the kernel as C floats.
struct Hyper32 {
  float lr, beta1, beta2, eps, wd;
  explicit Hyper32(const AdamHyper& h)
      : lr(float(h.lr)), beta1(float(h.beta1)), beta2(float(h.beta2)), eps(float(h.eps)),
        wd(float(h.weight_decay)) {}
};

}  // namespace

// bnb quantize_2D<SIGNED>, literally. It is dQuantize<0>'s (§2.3) binary search with two differences in form:
// - the first level reads "quadrants" {code[63], code[127], code[191]} (copied to registers in the kernel) instead
//   of code[pivot]; these are the same entries dQuantize would read (127, then 63 or 191);
// - the initial lower bound is -1 (signed) or 0 (unsigned) and, unlike dQuantize, is never replaced by code[0]
//   (nor the upper bound 1.0 by code[255]).
// Neither changes a result for the bnb maps: the bounds only matter when the search never turned (pivot 0 or
// 254), where every outcome is index 0, resp. code[255] == 1.0 anyway. The test checks this against
// dynamic_code(). NaN compares false everywhere and lands on index 0.
uint8_t quantize_2d(const float* code, float x, bool is_signed) {
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
    const float midpoint = (upper + val) * 0.5f;
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

AdamW8bit::AdamW8bit(int64_t n) : n_(n) {
  if (n < 0) fail(ErrorCode::BadInput, "make_adamw_8bit: negative size " + std::to_string(n));
  if (blockwise()) {
    // §10 state init: bytes 0 with absmax 0, which dequantizes to code[0] * 0 = (-)0.
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
  t_ += 1;  // Optimizer2State: state["step"] += 1 before the kernel runs, lr = 0 steps included (§9)
  if (blockwise())
    update_blockwise(param, grad, h);
  else
    update_32bit(param, grad, h);
}

// n < min_8bit_size (4096): bnb keeps fp32 state1/state2 and calls kOptimizer32bit2State<ADAM> (max_unorm = 0 so
// update_scale = 1, gnorm_scale = 1, skip_zeros = False):
//   m = m*b1 + (1-b1)*g ;  v = v*b2 + (1-b2)*(g*g)
//   p = p + step_size * (m / (sqrtf(v) + eps*corr2)) ;  if wd > 0: p *= 1 - lr*wd    (decay AFTER the step)
// with corr1 = 1 - powf(b1,t), corr2 = sqrtf(1 - powf(b2,t)), step_size = -lr*corr2/corr1 (plain powf and '/').
// Unlike the blockwise kernel this one has no finiteness test: with skip_zeros off, a NaN/inf gradient flows into
// m, v and p, as in bnb.
void AdamW8bit::update_32bit(float* param, const float* grad, const AdamHyper& hyper) {
  const Hyper32 h(hyper);
  const float step = float(t_);
  const float corr1 = 1.0f - std::pow(h.beta1, step);
  const float corr2 = std::sqrt(1.0f - std::pow(h.beta2, step));
  const float step_size = (-h.lr * corr2) / corr1;
  const float eps_term = rn(h.eps * corr2);
  const float decay = 1.0f - rn(h.lr * h.wd);
  const float w1 = 1.0f - h.beta1, w2 = 1.0f - h.beta2;
  float* m = m32_.data();
  float* v = v32_.data();
  for (int64_t i = 0; i < n_; i++) {  // < 4096 elements: not worth the pool
    const float g = grad[i];
    m[i] = rn(m[i] * h.beta1) + rn(w1 * g);
    v[i] = rn(v[i] * h.beta2) + rn(w2 * rn(g * g));
    float p = param[i] + rn(step_size * (m[i] / (std::sqrt(v[i]) + eps_term)));
    if (h.wd > 0.0f) p = p * decay;
    param[i] = p;
  }
}

// kOptimizerStatic8bit2StateBlockwise<float, ADAM, 2048, 8> (spec §10), one 2048-element block at a time:
//  pass 1: for every element, dequantize the state with the OLD absmax and update it,
//            finite g:  v = (q2[c2]*absmax2)*b2 + ((1-b2)*g)*g ;  m = (q1[c1]*absmax1)*b1 + (1-b1)*g
//            else:      m = v = 0 (and p stays untouched in pass 2)
//          and reduce absmax1' = max|m|, absmax2' = max|v| over the block (fmaxf from -FLT_MAX);
//  pass 2: p += step_size * (m / (sqrtf(v) + corr2*eps)); if wd > 0: p *= 1 - lr*wd (AFTER the step);
//          c1 = quantize_2D<signed>(m / absmax1'), c2 = quantize_2D<unsigned>(v / absmax2'), and if the code's sign
//          differs from m's, c1 moves one step towards m's sign (uint8 arithmetic, so 0 - 1 wraps to 255).
// The new state is quantized with the NEW absmax, so the two passes cannot be merged. An all-zero block has
// absmax' = 0: m/0 = 0/0 = NaN lands on index 0 in quantize_2D and the sign fix turns c1 into 255 (+1.0 * 0);
// v's NaN stays at index 0. We reproduce that through the same code path, with no special case.
// The kernel's tail: the last block's lanes past n are loaded with g = 0, state1 byte 128 and state2 byte 0 and
// take part in the block max (pad m = q1[128]*absmax1*b1, pad v = 0). The spec does not mention it; it only
// matters when every real m of that block is 0 (e.g. all its gradients non-finite), and we fold it in likewise.
// CUDA computes corr1/corr2/step_size with __powf/__fdividef and divides with __fdividef; we use powf and '/',
// which can differ from the GPU in the last bits (documented tolerance of the parity tests, not of this code).
void AdamW8bit::update_blockwise(float* param, const float* grad, const AdamHyper& hyper) {
  const Hyper32 h(hyper);
  const float step = float(t_);
  const float corr1 = 1.0f - std::pow(h.beta1, step);
  const float corr2 = std::sqrt(1.0f - std::pow(h.beta2, step));
  const float step_size = (-h.lr * corr2) / corr1;
  const float eps_term = rn(corr2 * h.eps);
  const float decay = 1.0f - rn(h.lr * h.wd);
  const float w1 = 1.0f - h.beta1, w2 = 1.0f - h.beta2;
  const float* q1 = dynamic_map_signed();    // m: signed dynamic map
  const float* q2 = dynamic_map_unsigned();  // v: unsigned dynamic map
  const int64_t n = n_;

  parallel_for(blocks(), 1, [&](int64_t b0, int64_t b1) {
    float m[kAdam8bitBlockSize], v[kAdam8bitBlockSize];  // the block's updated fp32 state (pass 1 -> pass 2)
    for (int64_t b = b0; b < b1; b++) {
      const int64_t e0 = b * kAdam8bitBlockSize;
      const int64_t len = std::min(kAdam8bitBlockSize, n - e0);
      uint8_t* c1 = state1_.data() + e0;
      uint8_t* c2 = state2_.data() + e0;
      const float* g = grad + e0;
      float* p = param + e0;
      const float a1 = absmax1_[size_t(b)], a2 = absmax2_[size_t(b)];

      // Pass 1: new state and the new block absmax.
      float max1 = -FLT_MAX, max2 = -FLT_MAX;
      for (int64_t j = 0; j < len; j++) {
        if (std::isfinite(g[j])) {
          v[j] = rn(rn(q2[c2[j]] * a2) * h.beta2) + rn(rn(w2 * g[j]) * g[j]);
          m[j] = rn(rn(q1[c1[j]] * a1) * h.beta1) + rn(w1 * g[j]);
        } else {
          m[j] = 0.0f;
          v[j] = 0.0f;
        }
        max1 = std::fmax(max1, std::fabs(m[j]));
        max2 = std::fmax(max2, std::fabs(v[j]));
      }
      if (len < kAdam8bitBlockSize) {  // the padded lanes of the last block (see above)
        const float pad_m = rn(rn(q1[128] * a1) * h.beta1) + rn(w1 * 0.0f);
        const float pad_v = rn(rn(q2[0] * a2) * h.beta2) + rn(rn(w2 * 0.0f) * 0.0f);
        max1 = std::fmax(max1, std::fabs(pad_m));
        max2 = std::fmax(max2, std::fabs(pad_v));
      }
      absmax1_[size_t(b)] = max1;
      absmax2_[size_t(b)] = max2;

      // Pass 2: parameter step, then requantize with the new absmax.
      for (int64_t j = 0; j < len; j++) {
        if (std::isfinite(g[j])) {
          float pj = p[j] + rn(step_size * (m[j] / (std::sqrt(v[j]) + eps_term)));
          if (h.wd > 0.0f) pj = pj * decay;
          p[j] = pj;
        }
        uint8_t k1 = quantize_2d(q1, m[j] / max1, true);
        const uint8_t k2 = quantize_2d(q2, v[j] / max2, false);
        // "make sure state1 term has still the same sign after quantization" (not needed for v >= 0)
        if (std::signbit(q1[k1]) != std::signbit(m[j])) k1 = uint8_t(m[j] > 0.0f ? k1 + 1 : k1 - 1);
        c1[j] = k1;
        c2[j] = k2;
      }
    }
  });
}

std::unique_ptr<ParamOptimizer> make_adamw_8bit(int64_t n) { return std::make_unique<AdamW8bit>(n); }

}  // namespace dpo
