// Per-tensor AdamW optimizers (fp32 torch.optim.AdamW, and bnb 0.43.1 8-bit blockwise AdamW, spec §10) plus
// torch's clip_grad_norm_ (spec §9). The LR schedule is not here: the TypeScript trainer passes lr every step.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace dpo {

// Doubles, like the Python floats of the reference: torch's AdamW computes its bias corrections and step size in
// double from them; bnb passes them to the kernel as C floats (the 8-bit optimizer rounds them to float first).
struct AdamHyper {
  double lr = 2e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// State for one parameter tensor; each has its own step counter t (incremented by every update, including lr=0
// steps: spec §9 "the optimizer's internal step counter also increments at step 1 (lr=0)").
class ParamOptimizer {
 public:
  virtual ~ParamOptimizer() = default;
  virtual void update(float* param, const float* grad, const AdamHyper& h) = 0;  // param, grad: (n)
  virtual int64_t step() const = 0;
  virtual uint64_t state_bytes() const = 0;
};

// fp32 torch.optim.AdamW (single-tensor path): p *= 1 - lr*wd, then the bias-corrected Adam step.
std::unique_ptr<ParamOptimizer> make_adamw(int64_t n);
// bnb 0.43.1 AdamW(optim_bits=8), spec §10: 8-bit blockwise state for n >= 4096, fp32 state below.
std::unique_ptr<ParamOptimizer> make_adamw_8bit(int64_t n);

// torch.nn.utils.clip_grad_norm_'s total: the L2 norm of the per-tensor L2 norms, as fp32.
// grads: (pointer, numel) pairs.
float global_grad_norm(const std::vector<std::pair<const float*, int64_t>>& grads);
// Scales every gradient by min(1, max_norm / (norm + 1e-6)) (torch clip_grad_norm_); returns the coefficient used.
float clip_grad_norm(const std::vector<std::pair<float*, int64_t>>& grads, float max_norm, float norm);

// ---- The concrete classes, exposed for the tests and for state inspection. ----

constexpr int64_t kAdam8bitBlockSize = 2048;  // BLOCKSIZE_2STATE (bnb ops.cu), spec §10
constexpr int64_t kAdam8bitMinSize = 4096;    // bnb min_8bit_size: smaller tensors keep fp32 state

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
  void update_32bit(float* param, const float* grad, const AdamHyper& h);
  void update_blockwise(float* param, const float* grad, const AdamHyper& h);

  int64_t n_ = 0, t_ = 0;
  std::vector<uint8_t> state1_, state2_;
  std::vector<float> absmax1_, absmax2_;
  std::vector<float> m32_, v32_;
};

// bnb quantize_2D<SIGNED> (kernels.cu L413), the nearest-code search used to requantize the 8-bit Adam state.
// code: a sorted 256-entry map (signed or unsigned dynamic map); x: value / absmax. NaN -> 0.
uint8_t quantize_2d(const float* code, float x, bool is_signed);

}  // namespace dpo
