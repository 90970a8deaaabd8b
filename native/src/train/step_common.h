// What the LoRA (DPO) and full-parameter (SFT) optimizer steps share: the hyperparameters as the optimizers take
// them, and torch's clip_grad_norm_ (the norm is measured, and returned for logging, before clipping; spec §9).
#pragma once
#include <utility>
#include <vector>

#include "dpo/engine.h"
#include "train/optimizer.h"

namespace dpo {

inline AdamHyper adam_hyper(const OptimizerOptions& o) {
  AdamHyper h;
  h.lr = o.lr;
  h.beta1 = o.beta1;
  h.beta2 = o.beta2;
  h.eps = o.eps;
  h.weight_decay = o.weight_decay;
  return h;
}

// grads: (pointer, numel) pairs. max_norm <= 0 measures without clipping.
inline float measure_and_clip(const std::vector<std::pair<float*, int64_t>>& grads, float max_norm) {
  std::vector<std::pair<const float*, int64_t>> view(grads.begin(), grads.end());
  const float norm = global_grad_norm(view);
  if (max_norm > 0) clip_grad_norm(grads, max_norm, norm);
  return norm;
}

}  // namespace dpo
