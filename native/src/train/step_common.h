// What the LoRA (DPO) and full-parameter (SFT) optimizer steps share: the hyperparameters as the optimizers take
// them, and torch's clip_grad_norm_ on the backend (the norm is measured, and returned for logging, before clipping;
// docs/reference/trainer.md#gradient-clipping).
#pragma once
#include <utility>
#include <vector>

#include "core/device_array.h"
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

// grads: (pointer, numel) pairs in `be`'s memory. Each tensor's fp32 norm is taken on the backend (Backend::l2_norm);
// only those floats come to the host, which combines them exactly as global_grad_norm does, and the clipping is
// Backend::scale by clip_grad_norm's coefficient (the same fp32 product). max_norm <= 0 measures without clipping.
inline float measure_and_clip(Backend& be, const std::vector<std::pair<float*, int64_t>>& grads, float max_norm) {
  DeviceArray<float> norms(be, grads.size());
  for (size_t i = 0; i < grads.size(); i++) be.l2_norm(norms.get() + i, grads[i].first, grads[i].second);
  const std::vector<float> host = norms.to_host();
  const float norm = norm_of_norms(host.data(), host.size());
  if (max_norm > 0) {
    const float coef = clip_coefficient(max_norm, norm);
    if (coef != 1.0f)  // x * 1 == x: skip the pass, as clip_grad_norm does
      for (const auto& [g, n] : grads) be.scale(g, g, coef, n);
  }
  return norm;
}

}  // namespace dpo
