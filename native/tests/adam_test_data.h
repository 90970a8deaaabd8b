// Test helper shared by the optimizer suites (CPU reference and CUDA parity): the gradients they feed and the
// hyperparameters they vary, so both check the same inputs.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "train/optimizer.h"

namespace dpo_test {

// Gradients with magnitudes in [0.3, 1.5] * scale and random signs (so m changes sign between steps).
inline std::vector<float> grads_for(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(0.3f, 1.5f);
  std::vector<float> g(n);
  for (auto& x : g) x = (rng() & 1 ? 1.0f : -1.0f) * mag(rng) * scale;
  return g;
}

// The defaults (betas 0.9/0.999, eps 1e-8) with this lr and weight decay.
inline dpo::AdamHyper hyper(double lr, double wd) {
  dpo::AdamHyper h;
  h.lr = lr;
  h.weight_decay = wd;
  return h;
}

}  // namespace dpo_test
