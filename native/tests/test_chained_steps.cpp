// Chained training steps (docs/performance.md#chained-training-steps): Model::dpo_accumulate_group runs the
// micro-batches of a step in one call, their common start (a chat template) once. Its metrics must be those of one
// dpo_accumulate call per micro-batch bit for bit, its LoRA gradients the same within the rounding of another
// summation order; where it cannot chain (LoRA dropout, DPO_CHAINED_STEPS=0) it must be those calls exactly. The chain
// planning: the common start, and the split of a step by the activation budget.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <vector>

#include "check.h"
#include "dpo/engine.h"
#include "dpo/errors.h"
#include "family_model.h"
#include "lora_grad_checks.h"
#include "model/segment_attention.h"
#include "random_lora_b.h"
#include "scored_pairs.h"
#include "tiny_model.h"
#include "train/dpo_group_plan.h"
#include "train/dpo_micro_batch.h"

using namespace dpo_test;

namespace {

dpo::DpoPair pair_of(std::vector<int> chosen, std::vector<int> rejected, int prompt, int V, double ref) {
  dpo::DpoPair p;
  p.chosen = scored(chosen, prompt, V), p.rejected = scored(rejected, prompt, V);
  p.ref_chosen = ref, p.ref_rejected = ref - 1.5;
  return p;
}

// A step's micro-batches: three that start with the same template (ids 1 2 3), of different lengths; one of two pairs;
// a pair whose answers share nothing past the template.
std::vector<std::vector<dpo::DpoPair>> template_step(int V) {
  return {{pair_of({1, 2, 3, 10, 11, 30, 2}, {1, 2, 3, 10, 11, 31, 5, 2}, 5, V, -9.0)},
          {pair_of({1, 2, 3, 20, 40, 41, 42, 43, 2}, {1, 2, 3, 20, 44, 2}, 4, V, -8.0)},
          {pair_of({1, 2, 3, 50, 51, 52, 2}, {1, 2, 3, 50, 51, 53, 2}, 5, V, -7.0),
           pair_of({1, 2, 3, 9, 8, 2}, {1, 2, 3, 9, 7, 6, 5, 4, 2}, 4, V, -6.5)},
          {pair_of({1, 2, 3, 12, 13, 2}, {1, 2, 3, 12, 14, 15, 2}, 4, V, -5.0)}};
}

// Micro-batches with no common start (the first tokens differ), and a long prompt: more than one logits chunk.
std::vector<std::vector<dpo::DpoPair>> varied_step(int V) {
  std::vector<int> a, b;
  for (int t = 0; t < 20; t++) a.push_back(4 + 3 * t);
  b = a;
  for (int t = 0; t < 30; t++) a.push_back(3 + 7 * t), b.push_back(5 + 11 * t);
  return {{pair_of({1, 5, 9, 33, 12, 2}, {1, 5, 9, 40, 3, 22, 18, 2}, 3, V, -10.0)},
          {pair_of({6, 11, 2}, {13, 11, 17, 2}, 0, V, -4.0)},
          {pair_of(a, b, 20, V, -40.0)}};
}

// One step's micro-batches through dpo_accumulate_group (chained unless DPO_CHAINED_STEPS=0), or one dpo_accumulate
// call each.
DpoRun step_run(const TinyModel& tm, dpo::QuantMode q, const std::vector<std::vector<dpo::DpoPair>>& step, bool group,
                bool chained, float dropout = 0.0f) {
  setenv("DPO_CHAINED_STEPS", chained ? "1" : "0", 1);
  auto model = load_with_lora(tm, dropout, q, 5);
  dpo::DpoOptions o;
  o.grad_scale = 1.0f / float(step.size());
  DpoRun r;
  if (group) {
    const auto got = model->dpo_accumulate_group(step, 0, o);
    CHECK(got.size() == step.size());
    for (size_t i = 0; i < got.size() && i < step.size(); i++) {
      CHECK(got[i].size() == step[i].size());
      add_metrics(r, got[i]);
    }
  } else {
    for (const auto& mb : step) add_metrics(r, model->dpo_accumulate(mb, 0, o));
  }
  r.grads = model->lora_gradients();
  unsetenv("DPO_CHAINED_STEPS");
  return r;
}

void check_chained_equals_calls(const TinyModel& tm) {
  const int V = tm.spec.V;
  for (const auto& step : {template_step(V), varied_step(V)})
    for (dpo::QuantMode q : {dpo::QuantMode::None, dpo::QuantMode::Nf4}) {
      const DpoRun want = step_run(tm, q, step, false, false), got = step_run(tm, q, step, true, true);
      CHECK(got.metrics == want.metrics);
      // fp32 weights: float rounding only. NF4: the input gradient rounds its incoming gradient to bf16, and a chain
      // reorders the sums of every micro-batch's rows (not only the prompt's), so single bf16 flips (2^-8 relative)
      // reach more entries of these tiny tensors than prompt sharing does: within one bf16 step over a tensor.
      if (q == dpo::QuantMode::None) check_close_grads(got, want, 2e-6f, 1e-6f);
      else check_close_grads(got, want, 1e-2f, 4e-3f);
    }
}

}  // namespace

TEST_CASE(chained_step_metrics_equal_one_call_per_micro_batch) {
  for (bool bf16 : {false, true}) {
    TinySpec s;
    s.bf16_values = bf16;
    check_chained_equals_calls(write_tiny_model(s));
  }
  check_chained_equals_calls(family_twin("qwen3-0.6b"));  // per-head q/k norms
}

TEST_CASE(unchained_group_is_the_calls_bit_for_bit) {
  // LoRA dropout (masks per decoder row) and DPO_CHAINED_STEPS=0 run each micro-batch alone: nothing may differ.
  TinySpec s;
  const TinyModel tm = write_tiny_model(s);
  const auto step = template_step(s.V);
  for (const auto& [chained, dropout] : std::vector<std::pair<bool, float>>{{true, 0.1f}, {false, 0.0f}}) {
    const DpoRun want = step_run(tm, dpo::QuantMode::Nf4, step, false, false, dropout),
                 got = step_run(tm, dpo::QuantMode::Nf4, step, true, chained, dropout);
    CHECK(got.metrics == want.metrics);
    CHECK(got.grads.size() == want.grads.size());
    for (size_t i = 0; i < got.grads.size() && i < want.grads.size(); i++)
      CHECK(got.grads[i].data == want.grads[i].data);
  }
}

TEST_CASE(last_block_on_the_scored_rows_is_the_whole_block_bit_for_bit) {
  // The last block's MLP, o_proj and q input-gradient products run on the scored rows only
  // (docs/performance.md#last-layer-only-where-scored): what they skip would only have added zeros, so metrics and
  // LoRA gradients are the bits of the whole rows' (DPO_LAST_BLOCK_GRAD_ROWS=0). LoRA on q, k, v, o and down; Llama
  // with fp32 and bf16 values, and Qwen3's per-head norms.
  std::vector<TinyModel> models;
  for (bool bf16 : {false, true}) {
    TinySpec s;
    s.bf16_values = bf16;
    models.push_back(write_tiny_model(s));
  }
  models.push_back(family_twin("qwen3-0.6b"));
  for (const TinyModel& tm : models)
    for (const auto& step : {template_step(tm.spec.V), varied_step(tm.spec.V)})
      for (dpo::QuantMode q : {dpo::QuantMode::None, dpo::QuantMode::Nf4}) {
        setenv("DPO_LAST_BLOCK_GRAD_ROWS", "0", 1);
        const DpoRun want = step_run(tm, q, step, true, true);
        setenv("DPO_LAST_BLOCK_GRAD_ROWS", "1", 1);
        const DpoRun got = step_run(tm, q, step, true, true);
        unsetenv("DPO_LAST_BLOCK_GRAD_ROWS");
        CHECK(got.metrics == want.metrics);
        CHECK(got.grads.size() == want.grads.size());
        for (size_t i = 0; i < got.grads.size() && i < want.grads.size(); i++)
          CHECK(got.grads[i].data == want.grads[i].data);
      }
  // The chained step reads the switch only where the scored rows are fewer than the gradient rows: it does here.
  setenv("DPO_LAST_BLOCK_GRAD_ROWS", "2", 1);
  auto model = load_with_lora(models[0], 0.0f, dpo::QuantMode::Nf4, 5);
  CHECK_THROWS_CODE(model->dpo_accumulate_group(template_step(models[0].spec.V), 0, dpo::DpoOptions{}),
                    dpo::ErrorCode::BadInput, "DPO_LAST_BLOCK_GRAD_ROWS must be 0 or 1, got '2'");
  unsetenv("DPO_LAST_BLOCK_GRAD_ROWS");
}

TEST_CASE(chain_plan_shares_the_common_start_within_the_budget) {
  TinySpec s;
  dpo::ModelConfig c;
  c.hidden = s.C, c.n_layers = s.L, c.n_heads = s.NH, c.n_kv_heads = s.NKV, c.head_dim = s.HD, c.intermediate = s.F;
  c.vocab = s.V;
  auto layouts = [&](const std::vector<std::vector<dpo::DpoPair>>& step) {
    std::vector<dpo::ScoringLayout> ls;
    for (const auto& mb : step) ls.push_back(dpo::dpo_layout(mb, 0, c, true));
    return ls;
  };
  auto pointers = [](const std::vector<dpo::ScoringLayout>& ls) {
    std::vector<const dpo::ScoringLayout*> p;
    for (const auto& l : ls) p.push_back(&l);
    return p;
  };
  // The template's 3 ids (every prompt is longer, so no common row is scored); a micro-batch whose row 1 is scored
  // (a 2-id prompt) caps it at 1.
  const auto tl = layouts(template_step(s.V));
  CHECK(dpo::common_start(pointers(tl)) == 3);
  auto early = template_step(s.V);
  early.push_back({pair_of({1, 2, 3, 7, 2}, {1, 2, 8, 2}, 2, s.V, -3.0)});
  CHECK(dpo::common_start(pointers(layouts(early))) == 1);
  CHECK(dpo::common_start(pointers(layouts(varied_step(s.V)))) == 0);

  // The rows a gradient can reach. Micro-batch 0 packs its pair into one row of 11: the chosen sequence's 7 positions
  // and one of padding, then the rejected answer's positions 5..7 (after the shared 5), skipping [5, 8). Scored: 4
  // (both answers' first token), 5, 8 and 9; the chosen EOS (6), its padding (7) and the rejected EOS (10) are not, and
  // only those rows see them.
  CHECK(tl[0].packed() && tl[0].rows.B == 1 && tl[0].rows.T == 11);
  CHECK(dpo::gradient_rows(tl[0]) == std::vector<uint8_t>({1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0}));

  // Budget: everything in one chain; just too small for two micro-batches; a micro-batch that runs alone splits.
  const auto p = pointers(tl);
  const std::vector<std::vector<size_t>> one = {{0, 1, 2, 3}};
  CHECK(dpo::plan_chains(p, c, ~uint64_t(0)) == one);
  const uint64_t two = dpo::chain_bytes(c, {p[0], p[1]});
  const std::vector<std::vector<size_t>> singles = {{0}, {1}, {2}, {3}};
  CHECK(dpo::plan_chains(p, c, two - 1) == singles);
  // Room for the first two or the last two (micro-batch 2 holds two pairs, 3 is the shortest): two chains.
  const std::vector<std::vector<size_t>> pairs = {{0, 1}, {2, 3}};
  CHECK(dpo::plan_chains(p, c, std::max(two, dpo::chain_bytes(c, {p[2], p[3]}))) == pairs);
  const std::vector<const dpo::ScoringLayout*> gap = {p[0], p[1], nullptr, p[2], p[3]};
  const std::vector<std::vector<size_t>> split = {{0, 1}, {2}, {3, 4}};
  CHECK(dpo::plan_chains(gap, c, ~uint64_t(0)) == split);
}

// A segment's rows may lie anywhere past the common rows (a chained step puts padding last), but together the
// segments must cover those rows once each.
TEST_CASE(segment_plan_takes_rows_anywhere_past_the_common_ones_once) {
  const std::unique_ptr<dpo::Backend> be = dpo::make_cpu_backend();
  auto segment = [](std::vector<int> rows) {
    dpo::AttentionSegment a;
    const size_t keys = 2 + rows.size();
    a.rows = std::move(rows);
    a.pos.resize(keys);
    for (size_t t = 0; t < keys; t++) a.pos[t] = int(t);
    a.valid.assign(keys, 1);
    return a;
  };
  const dpo::SegmentPlan plan(*be, 2, {segment({2, 3, 6}), segment({4, 5, 7})});
  CHECK(plan.rows() == 8);
  CHECK(plan.probs_floats(1) == size_t(5 * 5 + 3 * 5));  // segment 0 asks for all its rows, segment 1 past the common
  CHECK_THROWS_CODE(dpo::SegmentPlan(*be, 2, {segment({2, 3}), segment({3, 4})}), dpo::ErrorCode::Internal,
                    "segment 1 does not cover rows of its own");
  CHECK_THROWS_CODE(dpo::SegmentPlan(*be, 2, {segment({1, 2})}), dpo::ErrorCode::Internal,
                    "segment 0 does not cover rows of its own");
  CHECK_THROWS_CODE(dpo::SegmentPlan(*be, 2, {segment({2, 4})}), dpo::ErrorCode::Internal,
                    "segment 0 does not cover rows of its own");
}

TEST_CASE(a_bad_pair_is_named_by_its_micro_batch) {
  TinySpec s;
  const TinyModel tm = write_tiny_model(s);
  auto step = template_step(s.V);
  step[2][1].rejected.labels.assign(step[2][1].rejected.labels.size(), -100);  // nothing scored
  for (const char* chained : {"1", "0"}) {
    setenv("DPO_CHAINED_STEPS", chained, 1);
    auto model = load_with_lora(tm, 0.0f, dpo::QuantMode::Nf4, 5);
    CHECK_THROWS_CODE(model->dpo_accumulate_group(step, 0, dpo::DpoOptions{}), dpo::ErrorCode::BadInput,
                      "micro-batch 2: pair 1 has an answer with no scored tokens");
  }
  unsetenv("DPO_CHAINED_STEPS");
}

TEST_CASE(chained_step_stops_when_cancelled) {
  TinySpec s;
  const TinyModel tm = write_tiny_model(s);
  auto model = load_with_lora(tm, 0.0f, dpo::QuantMode::Nf4, 5);
  std::atomic<bool> cancel{true};
  CHECK_THROWS_CODE(model->dpo_accumulate_group(template_step(s.V), 0, dpo::DpoOptions{}, &cancel),
                    dpo::ErrorCode::Cancelled, "cancelled");
}

int main() { return run_all(); }
