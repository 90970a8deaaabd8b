// Kept logits (docs/performance.md#logits-only-where-scored): a training forward keeps the scored rows' logits for the
// backward within a byte budget and recomputes the chunks beyond it. Keeping none, some or all of them must give the
// same losses and the same LoRA and full-parameter gradients, bit for bit.
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "dpo/engine.h"
#include "dpo/errors.h"
#include "model/logits_pass.h"
#include "model/model_impl.h"
#include "random_lora_b.h"
#include "scored_pairs.h"
#include "tiny_model.h"

using namespace dpo_test;

namespace {

// Budgets: none kept, one chunk kept (the rest recomputed), the default (everything kept at these sizes).
std::vector<std::string> budgets(int V) { return {"0", std::to_string(dpo::kLogitsChunkRows * V * 4), ""}; }

void set_budget(const std::string& b) {
  if (b.empty()) unsetenv("DPO_KEPT_LOGITS_BYTES");
  else setenv("DPO_KEPT_LOGITS_BYTES", b.c_str(), 1);
}

// Answers long enough for more than one logits chunk of scored rows.
std::vector<dpo::DpoPair> long_pairs(int V) {
  std::vector<dpo::DpoPair> p(2);
  std::vector<int> a, b, c, d;
  for (int t = 0; t < 44; t++) a.push_back(3 + 7 * t), b.push_back(5 + 11 * t);
  for (int t = 0; t < 37; t++) c.push_back(2 + 13 * t), d.push_back(9 + 3 * t);
  p[0].chosen = scored(a, 4, V), p[0].rejected = scored(b, 4, V);
  p[1].chosen = scored(c, 3, V), p[1].rejected = scored(d, 6, V);
  p[0].ref_chosen = -160.0, p[0].ref_rejected = -150.0;
  p[1].ref_chosen = -120.0, p[1].ref_rejected = -131.0;
  return p;
}

struct DpoRun {
  std::vector<double> metrics;
  std::vector<dpo::LoraTensor> grads;
};

DpoRun dpo_run(const TinyModel& tm, const std::string& budget) {
  set_budget(budget);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
  dpo::LoraOptions lo;
  lo.targets = {"q_proj", "v_proj", "down_proj"};
  lo.r = 4;
  lo.dropout = 0.1f;
  model->attach_lora(lo);
  randomize_lora_b(*model, 5);
  DpoRun r;
  for (auto& pairs : {long_pairs(tm.spec.V), sample_pairs(tm.spec.V)})
    for (const dpo::DpoPairMetrics& m : model->dpo_accumulate(pairs, 2, {}))
      r.metrics.insert(r.metrics.end(), {m.loss, m.chosen_logp, m.rejected_logp, m.chosen_logits_mean});
  r.grads = model->lora_gradients();
  set_budget("");
  return r;
}

std::vector<std::vector<float>> sft_gradients(const TinyModel& tm, const std::string& budget) {
  set_budget(budget);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  const auto p = long_pairs(tm.spec.V);
  model->sft_accumulate({p[0].chosen, p[1].rejected, p[1].chosen}, 2, 1.0f);
  dpo::FullGrads& g = *model->impl().full;
  std::vector<std::vector<float>> out = {g.embed.to_host(), g.final_norm.to_host(), g.layers[1].lin[0].dw.to_host()};
  if (!g.lm_head.empty()) out.push_back(g.lm_head.to_host());
  set_budget("");
  return out;
}

}  // namespace

TEST_CASE(kept_logits_give_the_same_dpo_losses_and_lora_gradients) {
  // bf16 values: lm_head's input gradient then goes through the bf16 copy (docs/cpu-kernels.md#bf16-lm_head).
  for (bool bf16 : {false, true}) {
    TinySpec s;
    s.bf16_values = bf16;
    TinyModel tm = write_tiny_model(s);
    std::vector<DpoRun> runs;
    for (const std::string& b : budgets(s.V)) runs.push_back(dpo_run(tm, b));
    bool nonzero = false;
    for (float v : runs[0].grads[0].data) nonzero = nonzero || v != 0.0f;
    CHECK(nonzero);
    for (size_t k = 1; k < runs.size(); k++) {
      CHECK(runs[k].metrics == runs[0].metrics);
      CHECK(runs[k].grads.size() == runs[0].grads.size());
      for (size_t i = 0; i < runs[0].grads.size() && i < runs[k].grads.size(); i++)
        CHECK(runs[k].grads[i].data == runs[0].grads[i].data);
    }
  }
}

TEST_CASE(kept_logits_give_the_same_full_parameter_gradients) {
  for (bool tied : {false, true}) {
    TinySpec s;
    s.tied = tied;
    TinyModel tm = write_tiny_model(s);
    const auto want = sft_gradients(tm, "0");
    CHECK(want.size() == (tied ? 3u : 4u));
    for (const std::string& b : budgets(s.V)) CHECK(sft_gradients(tm, b) == want);
  }
}

TEST_CASE(kept_logits_budget_reads_a_byte_count) {
  set_budget("");
  CHECK(dpo::kept_logits_budget() == uint64_t(256) << 20);
  // Breeze-7B's vocabulary: a 1-pair HW6 micro-batch (about 140 answer rows) keeps 140 x 61952 floats, 34.7 MB.
  std::printf("  default budget keeps %llu rows at vocab 61952\n",
              static_cast<unsigned long long>(dpo::kept_logits_budget() / (61952 * 4)));
  set_budget("12345");
  CHECK(dpo::kept_logits_budget() == 12345u);
  set_budget("lots");
  bool threw = false;
  try {
    dpo::kept_logits_budget();
  } catch (const dpo::EngineError& e) {
    threw = std::string(e.what()).find("DPO_KEPT_LOGITS_BYTES") != std::string::npos;
  }
  CHECK(threw);
  set_budget("");
}

int main() { return run_all(); }
