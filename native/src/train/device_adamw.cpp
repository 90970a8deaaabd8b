// Device-state AdamW and 8-bit AdamW: zero-initialised state in the backend's memory, one backend op per update.
#include "train/device_adamw.h"

#include <string>

#include "dpo/errors.h"
#include "quant/nf4.h"

namespace dpo {

DeviceAdamW::DeviceAdamW(Backend& be, int64_t n) : be_(be), n_(n) {
  if (n < 0) fail(ErrorCode::BadInput, "make_device_adamw: negative size " + std::to_string(n));
  m_ = DeviceArray<float>::zeros(be, size_t(n));
  v_ = DeviceArray<float>::zeros(be, size_t(n));
}

void DeviceAdamW::update(float* param, const float* grad, const AdamHyper& h) {
  t_ += 1;  // torch: step += 1 before the update
  be_.adamw_step(param, m_.get(), v_.get(), grad, adamw_scalars(h, t_), n_);
}

DeviceAdamW8bit::DeviceAdamW8bit(Backend& be, int64_t n) : be_(be), n_(n) {
  if (n < 0) fail(ErrorCode::BadInput, "make_device_adamw_8bit: negative size " + std::to_string(n));
  if (blockwise()) {
    // docs/reference/optimizer.md#8-bit-state: bytes 0 with absmax 0, which dequantizes to code[0] * 0 = (-)0.
    state1_ = DeviceArray<uint8_t>::zeros(be, size_t(n));
    state2_ = DeviceArray<uint8_t>::zeros(be, size_t(n));
    absmax1_ = DeviceArray<float>::zeros(be, size_t(blocks()));
    absmax2_ = DeviceArray<float>::zeros(be, size_t(blocks()));
  } else {
    m32_ = DeviceArray<float>::zeros(be, size_t(n));
    v32_ = DeviceArray<float>::zeros(be, size_t(n));
  }
}

uint64_t DeviceAdamW8bit::state_bytes() const {
  if (!blockwise()) return uint64_t(n_) * 2 * sizeof(float);
  return uint64_t(n_) * 2 + uint64_t(blocks()) * 2 * sizeof(float);
}

void DeviceAdamW8bit::update(float* param, const float* grad, const AdamHyper& h) {
  // Optimizer2State: state["step"] += 1 before the kernel runs, lr = 0 steps included
  // (docs/reference/trainer.md#order-within-a-step).
  t_ += 1;
  const BnbAdamStepScalars s = bnb_adam_scalars(h, t_);
  if (blockwise())
    be_.adamw_bnb8bit_step(param, state1_.get(), state2_.get(), absmax1_.get(), absmax2_.get(), grad, s, n_);
  else be_.adamw_bnb32_step(param, m32_.get(), v32_.get(), grad, s, n_);
}

float DeviceAdamW8bit::m_at(int64_t i) const {
  float x = 0.0f;
  if (!blockwise()) {
    be_.download(&x, m32_.get() + i, sizeof(float));
    return x;
  }
  uint8_t c = 0;
  be_.download(&c, state1_.get() + i, 1);
  be_.download(&x, absmax1_.get() + i / kAdam8bitBlockSize, sizeof(float));
  return dynamic_map_signed()[c] * x;
}

float DeviceAdamW8bit::v_at(int64_t i) const {
  float x = 0.0f;
  if (!blockwise()) {
    be_.download(&x, v32_.get() + i, sizeof(float));
    return x;
  }
  uint8_t c = 0;
  be_.download(&c, state2_.get() + i, 1);
  be_.download(&x, absmax2_.get() + i / kAdam8bitBlockSize, sizeof(float));
  return dynamic_map_unsigned()[c] * x;
}

std::unique_ptr<DeviceOptimizer> make_device_adamw(Backend& be, int64_t n) {
  return std::make_unique<DeviceAdamW>(be, n);
}
std::unique_ptr<DeviceOptimizer> make_device_adamw_8bit(Backend& be, int64_t n) {
  return std::make_unique<DeviceAdamW8bit>(be, n);
}

}  // namespace dpo
