// The state behind dpo::Model: weights, the backend that computes, and the lock that serialises calls.
#pragma once
#include <memory>
#include <mutex>

#include "dpo/engine.h"
#include "model/device_weights.h"
#include "model/weights.h"
#include "train/full_grads.h"
#include "train/lora.h"

namespace dpo {

class ModelImpl {
 public:
  // Declared first so that it is destroyed last: everything below may hold memory of this backend.
  std::unique_ptr<Backend> backend;
  ModelWeights weights;
  DeviceWeights dev;  // the weights as the backend sees them
  ModelInfo info;
  std::unique_ptr<LoraAdapter> lora;  // null when no adapter is attached
  std::unique_ptr<FullGrads> full;    // full-parameter (SFT) gradients, allocated on the first sft_accumulate
  std::mutex mutex;
};

// Throws EngineError(Cancelled) when the flag is set.
inline void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) fail(ErrorCode::Cancelled, "cancelled");
}

}  // namespace dpo
