// Resume on the engine: a run whose training state (LoRA tensors + optimizer state + dropout generator) is exported
// after step k, from a step cancelled half-way, and imported into a freshly loaded model continues bit for bit like
// the run that never stopped, for fp32 AdamW and the 8-bit optimizer (both its blockwise and its 32-bit layouts), with
// dropout on and off; the import goes through backend memory (guarded backend) and refuses states that do not fit.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend_pair.h"
#include "check.h"
#include "dpo/engine.h"
#include "scored_pairs.h"
#include "tiny_model.h"

using namespace dpo_test;

namespace {

// r = 128 on the tiny model: every A and q_proj's B have 4096 elements (8-bit blockwise state), v_proj's B has 2048
// (bnb's 32-bit path). Dropout, when on, draws a mask per micro-batch from the adapter's generator.
dpo::LoraOptions lora_options(float dropout) {
  dpo::LoraOptions lo;
  lo.r = 128;
  lo.seed = 11;
  lo.dropout = dropout;
  return lo;
}

dpo::OptimizerOptions optimizer(bool eight_bit, int step) {
  dpo::OptimizerOptions o;
  o.eight_bit = eight_bit;
  o.lr = 1e-2f * float(step) / 4.0f;  // a schedule: every step its own learning rate
  o.max_grad_norm = 0.05f;
  o.weight_decay = 0.01f;
  return o;
}

struct StepLog {
  std::vector<double> losses;
  std::vector<double> norms;
};

// Runs steps [from, to] of the run: two micro-batches, then the optimizer step.
void run_steps(dpo::Model& m, bool eight_bit, int from, int to, StepLog& log) {
  auto pairs = sample_pairs(TinySpec().V);
  dpo::DpoOptions o;
  o.grad_scale = 0.5f;
  for (int step = from; step <= to; step++) {
    for (int micro = 0; micro < 2; micro++)
      for (const auto& r : m.dpo_accumulate(pairs, 2, o)) log.losses.push_back(r.loss);
    log.norms.push_back(m.optimizer_step(optimizer(eight_bit, step)));
  }
}

bool same_state(const dpo::TrainingState& a, const dpo::TrainingState& b) {
  if (a.optimizer != b.optimizer || a.dropout_rng != b.dropout_rng || a.tensors.size() != b.tensors.size())
    return false;
  for (size_t i = 0; i < a.tensors.size(); i++) {
    const auto &x = a.tensors[i], &y = b.tensors[i];
    auto same = [](const auto& p, const auto& q) {
      return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(p[0])) == 0;
    };
    if (x.name != y.name || x.layout != y.layout || x.step != y.step || x.numel != y.numel || !same(x.m, y.m) ||
        !same(x.v, y.v) || !same(x.state1, y.state1) || !same(x.state2, y.state2) || !same(x.absmax1, y.absmax1) ||
        !same(x.absmax2, y.absmax2))
      return false;
  }
  return true;
}

// Throws unless the engine refuses with a message containing `needle`.
void expect_refused(dpo::Model& m, const dpo::TrainingState& st, const std::string& needle) {
  try {
    m.import_training_state(st);
  } catch (const dpo::EngineError& e) {
    CHECK(e.code() == dpo::ErrorCode::BadInput);
    const bool named = std::string(e.what()).find(needle) != std::string::npos;
    if (!named) std::printf("  message: %s\n", e.what());
    CHECK(named);
    return;
  }
  std::printf("  accepted a state that should be refused (%s)\n", needle.c_str());
  CHECK(false);
}

void resume_matches_the_uninterrupted_run(bool eight_bit, float dropout) {
  std::printf("  %s, dropout %.1f\n", eight_bit ? "8-bit AdamW" : "fp32 AdamW", dropout);
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  // The uninterrupted run, 5 steps.
  auto [whole, resumed] = cpu_and_guarded(tm.dir);
  whole->attach_lora(lora_options(dropout));
  StepLog full;
  run_steps(*whole, eight_bit, 1, 5, full);

  // The stopped run: 2 steps, then one micro-batch of step 3 (gradients and dropout draws the checkpoint must not
  // see), then its state is saved.
  auto stopped = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  stopped->attach_lora(lora_options(dropout));
  StepLog first;
  run_steps(*stopped, eight_bit, 1, 2, first);
  const auto tensors_at_2 = stopped->lora_tensors();
  const dpo::TrainingState at_2 = stopped->export_training_state();
  dpo::DpoOptions o;
  o.grad_scale = 0.5f;
  stopped->dpo_accumulate(sample_pairs(s.V), 2, o);
  const dpo::TrainingState after_partial = stopped->export_training_state();
  CHECK(same_state(at_2, after_partial));
  CHECK(same_tensors(tensors_at_2, stopped->lora_tensors()));
  CHECK(at_2.optimizer ==
        (eight_bit ? dpo::TrainingState::Optimizer::AdamW8bit : dpo::TrainingState::Optimizer::AdamW));
  CHECK(at_2.tensors.size() == tensors_at_2.size());
  int blockwise = 0, bnb32 = 0;
  for (const auto& t : at_2.tensors) {
    CHECK(t.step == 2);
    blockwise += t.layout == dpo::OptimizerLayout::Bnb8Blockwise;
    bnb32 += t.layout == dpo::OptimizerLayout::Bnb32;
  }
  if (eight_bit) CHECK(blockwise > 0 && bnb32 > 0);

  // Resume in a freshly loaded model on backend memory: fresh adapter, saved tensors, saved state, steps 3-5.
  resumed->attach_lora(lora_options(dropout));
  resumed->set_lora_tensors(tensors_at_2);
  resumed->import_training_state(after_partial);
  CHECK(same_state(resumed->export_training_state(), at_2));
  StepLog rest;
  run_steps(*resumed, eight_bit, 3, 5, rest);
  CHECK(same_tensors(resumed->lora_tensors(), whole->lora_tensors()));
  CHECK(same_state(resumed->export_training_state(), whole->export_training_state()));
  std::vector<double> losses = first.losses, norms = first.norms;
  losses.insert(losses.end(), rest.losses.begin(), rest.losses.end());
  norms.insert(norms.end(), rest.norms.begin(), rest.norms.end());
  CHECK(losses == full.losses);
  CHECK(norms == full.norms);
}

}  // namespace

TEST_CASE(resume_continues_bit_for_bit_adamw) { resume_matches_the_uninterrupted_run(false, 0.0f); }
TEST_CASE(resume_continues_bit_for_bit_adamw_8bit) { resume_matches_the_uninterrupted_run(true, 0.0f); }
TEST_CASE(resume_continues_bit_for_bit_with_dropout) {
  resume_matches_the_uninterrupted_run(false, 0.1f);
  resume_matches_the_uninterrupted_run(true, 0.1f);
}

// Before the first step there is no optimizer state, only the generator; importing that gives a fresh start.
TEST_CASE(state_before_the_first_step_has_no_optimizer) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto m = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  m->attach_lora(lora_options(0.1f));
  const dpo::TrainingState st = m->export_training_state();
  CHECK(st.optimizer == dpo::TrainingState::Optimizer::None);
  CHECK(st.tensors.empty());
  CHECK(!st.dropout_rng.empty());
  m->import_training_state(st);
  CHECK(same_state(m->export_training_state(), st));
}

// A state that does not fit the attached adapter is refused with the tensor named, and changes nothing.
TEST_CASE(import_refuses_a_state_that_does_not_fit) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto m = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  m->attach_lora(lora_options(0.0f));
  StepLog log;
  run_steps(*m, true, 1, 1, log);
  const dpo::TrainingState good = m->export_training_state();
  const std::string first = good.tensors.front().name;

  dpo::TrainingState st = good;
  st.tensors.pop_back();
  expect_refused(*m, st, good.tensors.back().name + " is missing");

  st = good;
  st.optimizer = dpo::TrainingState::Optimizer::AdamW;  // 8-bit state presented as fp32 AdamW's
  expect_refused(*m, st, "layout bnb8_blockwise");

  st = good;
  st.tensors.front().absmax1.pop_back();
  expect_refused(*m, st, first + ": absmax1 has");

  st = good;
  st.tensors.front().numel += 1;
  expect_refused(*m, st, "elements");

  st = good;
  st.tensors.push_back(good.tensors.front());
  expect_refused(*m, st, "appears twice");

  st = good;
  st.tensors.push_back(good.tensors.front());
  st.tensors.back().name = "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight";
  expect_refused(*m, st, "layers.9.self_attn.q_proj.lora_A.weight does not belong");

  st = good;
  st.dropout_rng = "not a generator";
  expect_refused(*m, st, "std::mt19937");

  st = good;
  st.tensors.front().step = -1;
  expect_refused(*m, st, "negative step");

  CHECK(same_state(m->export_training_state(), good));

  // A different rank: the shapes no longer fit.
  dpo::LoraOptions other = lora_options(0.0f);
  other.r = 64;
  m->attach_lora(other);
  expect_refused(*m, good, "elements");
}

TEST_MAIN()
