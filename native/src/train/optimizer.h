// Per-tensor AdamW optimizers (fp32 torch.optim.AdamW, and bnb 0.43.1 8-bit blockwise AdamW,
// docs/reference/optimizer.md) plus torch's clip_grad_norm_ (docs/reference/trainer.md#gradient-clipping), on host
// memory: the reference. The classes here hold their state in host vectors; train/device_adamw.h holds it in a
// backend's memory and runs the same arithmetic as backend ops (the CPU backend calls the cpu:: functions below). The
// LR schedule is not here: the TypeScript trainer passes lr every step.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "dpo/backend.h"

namespace dpo {

// Doubles, like the Python floats of the reference: torch's AdamW computes its bias corrections and step size in
// double from them; bnb passes them to the kernel as C floats (the 8-bit optimizer rounds them to float first).
struct AdamHyper {
  double lr = 2e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// State for one parameter tensor; each has its own step counter t (incremented by every update, including lr=0
// steps: docs/reference/trainer.md#order-within-a-step).
class ParamOptimizer {
 public:
  virtual ~ParamOptimizer() = default;
  virtual void update(float* param, const float* grad, const AdamHyper& h) = 0;  // param, grad: (n)
  virtual int64_t step() const = 0;
  virtual uint64_t state_bytes() const = 0;
};

// fp32 torch.optim.AdamW (single-tensor path): p *= 1 - lr*wd, then the bias-corrected Adam step.
std::unique_ptr<ParamOptimizer> make_adamw(int64_t n);
// bnb 0.43.1 AdamW(optim_bits=8), docs/reference/optimizer.md: 8-bit blockwise state for n >= 4096, fp32 state below.
std::unique_ptr<ParamOptimizer> make_adamw_8bit(int64_t n);

// The scalars of update number t (1-based) as each reference computes them on the host: torch in Python doubles
// (rounded to fp32 where its tensor ops take them), bnb in C floats.
AdamWStepScalars adamw_scalars(const AdamHyper& h, int64_t t);
BnbAdamStepScalars bnb_adam_scalars(const AdamHyper& h, int64_t t);

// torch.nn.utils.clip_grad_norm_'s total: the L2 norm of the per-tensor L2 norms, as fp32.
// grads: (pointer, numel) pairs.
float global_grad_norm(const std::vector<std::pair<const float*, int64_t>>& grads);
// Its second half: the fp32 norm of `count` per-tensor fp32 norms (Backend::l2_norm gives them per tensor).
float norm_of_norms(const float* norms, size_t count);
// min(1, max_norm / (norm + 1e-6)) in fp32, NaN kept (torch clip_grad_norm_ with error_if_nonfinite=False).
float clip_coefficient(float max_norm, float norm);
// Scales every gradient by clip_coefficient (torch clip_grad_norm_); returns the coefficient used.
float clip_grad_norm(const std::vector<std::pair<float*, int64_t>>& grads, float max_norm, float norm);

// ---- The reference arithmetic over raw host pointers: the classes below and the CPU backend's ops run these. ----
namespace cpu {
// Backend::l2_norm's value: fp32 sqrt of the double sum of squares, taken over fixed 64Ki-element chunks.
float l2_norm(const float* x, int64_t n);
// Backend::adamw_step, adamw_bnb32_step, adamw_bnb8bit_step (shapes there).
void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWStepScalars& s,
                int64_t n);
void adamw_bnb32_step(float* param, float* m, float* v, const float* grad, const BnbAdamStepScalars& s, int64_t n);
void adamw_bnb8bit_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                        const float* grad, const BnbAdamStepScalars& s, int64_t n);
}  // namespace cpu

// ---- The concrete classes, exposed for the tests and for state inspection. ----

class AdamW final : public ParamOptimizer {
 public:
  explicit AdamW(int64_t n);
  void update(float* param, const float* grad, const AdamHyper& h) override;
  int64_t step() const override { return t_; }
  uint64_t state_bytes() const override { return uint64_t(n_) * 2 * sizeof(float); }
  const std::vector<float>& m() const { return m_; }  // exp_avg (n)
  const std::vector<float>& v() const { return v_; }  // exp_avg_sq (n)

 private:
  int64_t n_ = 0, t_ = 0;
  std::vector<float> m_, v_;
};

class AdamW8bit final : public ParamOptimizer {
 public:
  explicit AdamW8bit(int64_t n);
  void update(float* param, const float* grad, const AdamHyper& h) override;
  int64_t step() const override { return t_; }
  uint64_t state_bytes() const override;

  bool blockwise() const { return n_ >= kAdam8bitMinSize; }
  int64_t blocks() const { return blockwise() ? (n_ + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize : 0; }
  // blockwise(): codes into dynamic_map_signed() (m) / dynamic_map_unsigned() (v), and the fp32 block scales.
  const std::vector<uint8_t>& state1() const { return state1_; }  // (n)
  const std::vector<uint8_t>& state2() const { return state2_; }  // (n)
  const std::vector<float>& absmax1() const { return absmax1_; }  // (blocks)
  const std::vector<float>& absmax2() const { return absmax2_; }  // (blocks)
  // !blockwise(): the fp32 state of bnb's 32-bit kernel.
  const std::vector<float>& m32() const { return m32_; }  // (n)
  const std::vector<float>& v32() const { return v32_; }  // (n)
  // The state as the next update will read it, either way: code[c] * absmax[i / 2048], or the fp32 value.
  float m_at(int64_t i) const;
  float v_at(int64_t i) const;

 private:
  int64_t n_ = 0, t_ = 0;
  std::vector<uint8_t> state1_, state2_;
  std::vector<float> absmax1_, absmax2_;
  std::vector<float> m32_, v32_;
};

// bnb quantize_2D<SIGNED> (kernels.cu L413), the nearest-code search used to requantize the 8-bit Adam state
// (train/adam_math.h). code: a sorted 256-entry map (signed or unsigned dynamic map); x: value / absmax. NaN -> 0.
uint8_t quantize_2d(const float* code, float x, bool is_signed);

}  // namespace dpo
