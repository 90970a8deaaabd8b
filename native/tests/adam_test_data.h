// Test helper shared by the optimizer suites (test_optimizer, the registry's optimizer cases): the gradients they
// feed, the hyperparameters they vary, and the double-precision Adam they compare with.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
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

// Plain Adam in double. decay_first: torch AdamW (p *= 1 - lr*wd before the step); else bnb (after the step).
struct RefAdam {
  std::vector<double> p, m, v;
  int64_t t = 0;
  explicit RefAdam(const std::vector<float>& p0) : p(p0.begin(), p0.end()), m(p0.size(), 0.0), v(p0.size(), 0.0) {}
  void step(const std::vector<float>& g, const dpo::AdamHyper& h, bool decay_first) {
    t++;
    const double bc1 = 1.0 - std::pow(h.beta1, double(t)), bc2 = 1.0 - std::pow(h.beta2, double(t));
    for (size_t i = 0; i < p.size(); i++) {
      if (decay_first) p[i] *= 1.0 - h.lr * h.weight_decay;
      m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
      v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * double(g[i]) * g[i];
      p[i] -= h.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + h.eps);
      if (!decay_first) p[i] *= 1.0 - h.lr * h.weight_decay;
    }
  }
};

// Counts elements with |got - want| > atol + rtol*|want| and prints the first few.
inline int count_far(const char* what, const float* got, const std::vector<double>& want, double atol, double rtol) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); i++) {
    if (std::fabs(double(got[i]) - want[i]) <= atol + rtol * std::fabs(want[i])) continue;
    if (bad++ < 3) std::printf("  %s[%zu] = %.9g, want %.9g\n", what, i, double(got[i]), want[i]);
  }
  return bad;
}

// bnb hands the hyperparameters to its kernels as C floats: 1 - 0.999f is 1.3e-5 away from 1 - 0.999, visible in v.
inline dpo::AdamHyper as_floats(const dpo::AdamHyper& h) {
  dpo::AdamHyper f;
  f.lr = float(h.lr);
  f.beta1 = float(h.beta1);
  f.beta2 = float(h.beta2);
  f.eps = float(h.eps);
  f.weight_decay = float(h.weight_decay);
  return f;
}

}  // namespace dpo_test
