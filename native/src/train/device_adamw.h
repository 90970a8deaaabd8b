// The optimizers of train/optimizer.h with their state in a backend's memory (GPU memory on CUDA): each update is one
// backend op on device params and gradients (Backend::adamw_step, adamw_bnb32_step, adamw_bnb8bit_step), with the
// scalars computed on the host as the references do, so the step never moves a tensor across PCIe. The results are
// those of the host classes (AdamW, AdamW8bit) bit for bit: the CPU backend runs the same functions, the CUDA kernels
// the same per-element arithmetic (train/adam_math.h). State getters download on demand (tests, inspection).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/device_array.h"
#include "dpo/backend.h"
#include "dpo/training_state.h"
#include "train/optimizer.h"

namespace dpo {

// State for one parameter tensor in `be`'s memory; its own step counter t, incremented by every update (lr = 0
// steps included, docs/reference/trainer.md#order-within-a-step).
class DeviceOptimizer {
 public:
  virtual ~DeviceOptimizer() = default;
  // param (n) is updated in place from grad (n); both in the backend's memory.
  virtual void update(float* param, const float* grad, const AdamHyper& h) = 0;
  virtual int64_t step() const = 0;
  virtual uint64_t state_bytes() const = 0;
  // The state as a checkpoint holds it (downloaded from the backend: layout, step, numel and the arrays; the name is
  // the caller's), and back (uploaded; `in` must have passed check_optimizer_state). train/optimizer_state.cpp.
  virtual void save_state(OptimizerTensorState& out) const = 0;
  virtual void load_state(const OptimizerTensorState& in) = 0;
};

// Throws E_BAD_INPUT, naming the tensor, unless `s` is the state that `eight_bit` (or fp32 AdamW) keeps for a
// parameter of `numel` elements: layout, array sizes, a non-negative step.
void check_optimizer_state(const OptimizerTensorState& s, bool eight_bit, int64_t numel);

// fp32 torch.optim.AdamW (as AdamW).
std::unique_ptr<DeviceOptimizer> make_device_adamw(Backend& be, int64_t n);
// bnb 0.43.1 AdamW(optim_bits=8), docs/reference/optimizer.md (as AdamW8bit): 8-bit blockwise state for n >= 4096, fp32
// below.
std::unique_ptr<DeviceOptimizer> make_device_adamw_8bit(Backend& be, int64_t n);

class DeviceAdamW final : public DeviceOptimizer {
 public:
  DeviceAdamW(Backend& be, int64_t n);
  void update(float* param, const float* grad, const AdamHyper& h) override;
  int64_t step() const override { return t_; }
  uint64_t state_bytes() const override { return uint64_t(n_) * 2 * sizeof(float); }
  void save_state(OptimizerTensorState& out) const override;
  void load_state(const OptimizerTensorState& in) override;
  std::vector<float> m() const { return m_.to_host(); }  // exp_avg (n)
  std::vector<float> v() const { return v_.to_host(); }  // exp_avg_sq (n)

 private:
  Backend& be_;
  int64_t n_ = 0, t_ = 0;
  DeviceArray<float> m_, v_;
};

class DeviceAdamW8bit final : public DeviceOptimizer {
 public:
  DeviceAdamW8bit(Backend& be, int64_t n);
  void update(float* param, const float* grad, const AdamHyper& h) override;
  int64_t step() const override { return t_; }
  uint64_t state_bytes() const override;
  void save_state(OptimizerTensorState& out) const override;
  void load_state(const OptimizerTensorState& in) override;

  bool blockwise() const { return n_ >= kAdam8bitMinSize; }
  int64_t blocks() const { return blockwise() ? (n_ + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize : 0; }
  // As AdamW8bit's, downloaded: blockwise() codes and block scales, else the fp32 state of bnb's 32-bit kernel.
  std::vector<uint8_t> state1() const { return state1_.to_host(); }  // (n)
  std::vector<uint8_t> state2() const { return state2_.to_host(); }  // (n)
  std::vector<float> absmax1() const { return absmax1_.to_host(); }  // (blocks)
  std::vector<float> absmax2() const { return absmax2_.to_host(); }  // (blocks)
  std::vector<float> m32() const { return m32_.to_host(); }  // (n)
  std::vector<float> v32() const { return v32_.to_host(); }  // (n)
  // The state as the next update reads it, code[c] * absmax[i / 2048] or the fp32 value (two small downloads).
  float m_at(int64_t i) const;
  float v_at(int64_t i) const;

 private:
  Backend& be_;
  int64_t n_ = 0, t_ = 0;
  DeviceArray<uint8_t> state1_, state2_;
  DeviceArray<float> absmax1_, absmax2_;
  DeviceArray<float> m32_, v32_;
};

}  // namespace dpo
