// Comparing two training runs of the same pairs in different layouts (prompt-prefix sharing, chained steps): the tiny
// model both load, their metrics bit for bit, their LoRA gradients within the rounding that a different summation
// order explains.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "check.h"
#include "dpo/engine.h"
#include "random_lora_b.h"
#include "tiny_model.h"

namespace dpo_test {

// The tiny model on the CPU with a rank-4 adapter on q, k, v, o and down, its lora_B drawn at random (seed), so that
// both factors get gradients.
inline std::unique_ptr<dpo::Model> load_with_lora(const TinyModel& tm, float dropout = 0.0f,
                                                  dpo::QuantMode q = dpo::QuantMode::Nf4, unsigned seed = 11) {
  auto model = dpo::Model::load(tm.dir, {q, dpo::BackendChoice::Cpu});
  dpo::LoraOptions lo;
  lo.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "down_proj"};
  lo.r = 4;
  lo.dropout = dropout;
  model->attach_lora(lo);
  randomize_lora_b(*model, seed);
  return model;
}

struct DpoRun {
  std::vector<double> metrics;  // per pair: loss, log-probs, logit means, rewards
  std::vector<dpo::LoraTensor> grads;
};

inline void add_metrics(DpoRun& r, const std::vector<dpo::DpoPairMetrics>& ms) {
  for (const dpo::DpoPairMetrics& m : ms)
    r.metrics.insert(r.metrics.end(), {m.loss, m.chosen_logp, m.rejected_logp, m.chosen_logits_mean,
                                       m.rejected_logits_mean, m.chosen_reward, m.rejected_reward});
}

// Rows that carry several sequences' gradients (a shared prompt, a chain's common start) sum them in another order.
// With fp32 base weights that moves LoRA gradients by float rounding only (max_rel). The NF4 input gradient rounds
// its incoming gradient to bf16 (docs/cpu-kernels.md), so there a last-bit change can flip a bf16 rounding:
// differences of bf16 size in single entries, far below it over a tensor (l2_rel).
inline void check_close_grads(const DpoRun& got, const DpoRun& want, float max_rel, float l2_rel) {
  CHECK(got.grads.size() == want.grads.size());
  for (size_t i = 0; i < got.grads.size() && i < want.grads.size(); i++) {
    const auto &g = got.grads[i].data, &w = want.grads[i].data;
    CHECK(g.size() == w.size());
    float scale = 0.0f, diff = 0.0f;
    double d2 = 0.0, w2 = 0.0;
    for (size_t k = 0; k < g.size() && k < w.size(); k++) {
      scale = std::max(scale, std::fabs(w[k])), diff = std::max(diff, std::fabs(g[k] - w[k]));
      d2 += double(g[k] - w[k]) * double(g[k] - w[k]), w2 += double(w[k]) * double(w[k]);
    }
    CHECK(scale > 0.0f);
    if (!(diff <= max_rel * scale && d2 <= double(l2_rel) * l2_rel * w2))
      std::printf("  tensor %zu: max diff %g, largest %g, relative L2 %g\n", i, double(diff), double(scale),
                  std::sqrt(d2 / w2));
    CHECK(diff <= max_rel * scale);
    CHECK(d2 <= double(l2_rel) * l2_rel * w2);
  }
}

}  // namespace dpo_test
