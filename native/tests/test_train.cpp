// Training checks on tiny generated models against independent double-precision computations:
// LoRA gradients of every DPO loss by central finite differences (fp32 and NF4 bases), the B = 0 start (loss ln 2),
// one AdamW update, LoRA init draw order, adapter tensors in and out, and the optimizer steps on backend memory
// (guarded backend) against the CPU backend's.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <utility>

#include "backend_pair.h"
#include "check.h"
#include "core/half.h"
#include "dpo/engine.h"
#include "family_model.h"
#include "model/model_impl.h"
#include "quant/nf4.h"
#include "random_lora_b.h"
#include "reference_forward.h"
#include "scored_pairs.h"
#include "tiny_model.h"

using namespace dpo_test;

namespace {

const char* kKinds[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

std::string peft_name(int layer, int kind, bool a) {
  return "base_model.model.model.layers." + std::to_string(layer) + (kind <= 3 ? ".self_attn." : ".mlp.") +
         kKinds[kind] + (a ? ".lora_A.weight" : ".lora_B.weight");
}

// Weights as a double reference sees them, with the adapter merged: W + scale * B A (exact when dropout is off).
struct MergedWeights {
  const TinyModel& m;
  bool nf4;
  std::map<std::string, std::vector<double>> lora;  // peft name -> values
  double scale;
  int r;

  std::vector<double> base(const std::string& name) const {
    const auto& v = m.at(name);
    std::vector<double> out(v.begin(), v.end());
    if (!nf4 || name.find("_proj.weight") == std::string::npos) return out;
    return nf4_engine_weights(m.spec, name, v);
  }
  std::vector<double> operator()(const std::string& name) const {
    std::vector<double> w = base(name);
    // "model.layers.{l}.{self_attn|mlp}.{kind}.weight"
    for (int l = 0; l < m.spec.L; l++)
      for (int k = 0; k < 7; k++) {
        std::string hf =
            "model.layers." + std::to_string(l) + (k <= 3 ? ".self_attn." : ".mlp.") + kKinds[k] + ".weight";
        if (hf != name) continue;
        auto ia = lora.find(peft_name(l, k, true));
        if (ia == lora.end()) return w;
        const auto& A = ia->second;
        const auto& B = lora.at(peft_name(l, k, false));
        int64_t rows = 0, cols = 0;
        linear_shape(m.spec, name, rows, cols);
        for (int64_t o = 0; o < rows; o++)
          for (int64_t i = 0; i < cols; i++) {
            double acc = 0;
            for (int j = 0; j < r; j++) acc += B[size_t(o * r + j)] * A[size_t(j * cols + i)];
            w[size_t(o * cols + i)] += scale * acc;
          }
      }
    return w;
  }
};

double seq_logp(const TinySpec& s, const WeightFn& W, const dpo::ScoredSequence& seq, bool average) {
  std::vector<int> ids(seq.ids.begin(), seq.ids.end());
  auto logits = reference_logits(s, W, ids, int(ids.size()));
  double sum = 0;
  int n = 0;
  for (size_t t = 0; t + 1 < ids.size(); t++)
    if (seq.labels[t + 1] != -100) sum += log_softmax_at(logits[t], seq.labels[t + 1]), n++;
  return average ? sum / n : sum;
}

// Independent double-precision DPO losses (trl 0.9.6 dpo_loss).
double ref_loss(dpo::DpoLoss kind, double d, double beta, double ls) {
  auto logsig = [](double z) { return -std::log1p(std::exp(-z)); };
  switch (kind) {
    case dpo::DpoLoss::Sigmoid: return -logsig(beta * d) * (1 - ls) - logsig(-beta * d) * ls;
    case dpo::DpoLoss::Robust: return (-logsig(beta * d) * (1 - ls) + logsig(-beta * d) * ls) / (1 - 2 * ls);
    case dpo::DpoLoss::Hinge: return std::max(0.0, 1 - beta * d);
    case dpo::DpoLoss::Ipo: return (d - 1 / (2 * beta)) * (d - 1 / (2 * beta));
  }
  return 0;
}

// Mean DPO loss over the pairs, in double, with the adapter merged into the weights.
double ref_batch_loss(const TinySpec& s, const MergedWeights& W, const std::vector<dpo::DpoPair>& pairs,
                      const dpo::DpoOptions& o) {
  const bool avg = o.loss == dpo::DpoLoss::Ipo;
  double total = 0;
  WeightFn fn = [&W](const std::string& n) { return W(n); };
  for (const auto& p : pairs) {
    auto count = [](const dpo::ScoredSequence& q) {
      int n = 0;
      for (size_t t = 1; t < q.labels.size(); t++) n += q.labels[t] != -100;
      return double(n);
    };
    const double nc = avg ? count(p.chosen) : 1, nr = avg ? count(p.rejected) : 1;
    const double d =
        (seq_logp(s, fn, p.chosen, avg) - seq_logp(s, fn, p.rejected, avg)) - (p.ref_chosen / nc - p.ref_rejected / nr);
    total += ref_loss(o.loss, d, o.beta, o.label_smoothing);
  }
  return total / double(pairs.size());
}

// Attaches LoRA to every linear kind with random non-zero B (so dA is non-zero too) and returns the tensors.
std::vector<dpo::LoraTensor> attach_random_lora(dpo::Model& model, int r, float alpha, unsigned seed) {
  dpo::LoraOptions lo;
  lo.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  lo.r = r;
  lo.alpha = alpha;
  lo.seed = seed;
  model.attach_lora(lo);
  return randomize_lora_b(model, seed);
}

// fp32 base: every sampled entry must match to rtol. NF4 base: the engine rounds matmul inputs to bf16
// (docs/reference/linear4bit.md#prefill-and-training-path), which the double reference does not, so single small
// entries can differ; there the whole sampled gradient vector must point the same way (cosine >= 0.99) and match in
// norm to rtol.
void gradient_check_on(const TinyModel& tm, bool nf4, dpo::DpoLoss loss, float ls, double rtol) {
  const TinySpec& s = tm.spec;
  auto model = dpo::Model::load(tm.dir, {nf4 ? dpo::QuantMode::Nf4 : dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  const int r = 4;
  auto tensors = attach_random_lora(*model, r, 8.0f, 3);
  auto pairs = sample_pairs(s.V);
  dpo::DpoOptions o;
  o.loss = loss;
  o.beta = loss == dpo::DpoLoss::Ipo ? 0.5f : 0.1f;
  o.label_smoothing = ls;
  auto metrics = model->dpo_accumulate(pairs, 2, o);

  MergedWeights W{tm, nf4, {}, 8.0 / r, r};
  for (auto& t : tensors) W.lora[t.name] = std::vector<double>(t.data.begin(), t.data.end());
  const double L0 = ref_batch_loss(s, W, pairs, o);
  double mean_loss = 0;
  for (auto& mt : metrics) mean_loss += mt.loss / double(metrics.size());
  CHECK_CLOSE(mean_loss, L0, nf4 ? 2e-2 : 1e-4, nf4 ? 2e-2 : 1e-4);

  // Central differences on a sample of entries of every adapted tensor.
  dpo::LoraAdapter& a = *model->impl().lora;
  std::mt19937 pick(5);
  int checked = 0, bad = 0;
  double max_rel = 0, dot = 0, nn = 0, aa = 0, diff2 = 0;
  for (int l = 0; l < s.L; l++)
    for (int k = 0; k < 7; k++)
      for (bool isA : {true, false}) {
        dpo::LoraWeights* w = a.at(l, k);
        const std::vector<float> grad = (isA ? w->dA : w->dB).to_host();
        const std::string name = peft_name(l, k, isA);
        for (int trial = 0; trial < 3; trial++) {
          const size_t idx = pick() % grad.size();
          auto& vals = W.lora[name];
          const double keep = vals[idx], h = 1e-5;
          vals[idx] = keep + h;
          const double lp = ref_batch_loss(s, W, pairs, o);
          vals[idx] = keep - h;
          const double lm = ref_batch_loss(s, W, pairs, o);
          vals[idx] = keep;
          const double num = (lp - lm) / (2 * h), got = grad[idx];
          const double err = std::fabs(got - num), tol = 1e-6 + rtol * std::fabs(num);
          max_rel = std::max(max_rel, err / (std::fabs(num) + 1e-6));
          dot += got * num, nn += num * num, aa += got * got, diff2 += err * err;
          checked++;
          if (!nf4 && err > tol) {
            bad++;
            std::printf("  %s[%zu]: analytic %.8g numeric %.8g\n", name.c_str(), idx, got, num);
          }
        }
      }
  const double cosine = dot / std::sqrt(nn * aa), rel_l2 = std::sqrt(diff2 / nn);
  std::printf("  %d gradient entries checked, max relative error %.2e, cosine %.6f, relative L2 error %.2e\n", checked,
              max_rel, cosine, rel_l2);
  CHECK(bad == 0);
  if (nf4) {
    CHECK(cosine >= 0.99);
    CHECK(rel_l2 <= rtol);
  }
}

// Full-parameter SFT in double: the tiny model's weights (perturbable one entry at a time) and the mean cross-entropy
// of a batch's labelled tokens under them, which is what sft_accumulate returns; gradients are checked against its
// central differences.
struct SftReference {
  TinySpec s;
  std::vector<dpo::ScoredSequence> batch;
  std::map<std::string, std::vector<double>> w;

  SftReference(const TinyModel& tm, std::vector<dpo::ScoredSequence> b) : s(tm.spec), batch(std::move(b)) {
    for (auto& [name, v] : tm.w) w[name] = std::vector<double>(v.begin(), v.end());
  }

  double loss() {
    WeightFn fn = [this](const std::string& name) { return w.at(name); };
    double total = 0;
    int count = 0;
    for (auto& q : batch) {
      total -= seq_logp(s, fn, q, false);
      for (size_t t = 1; t < q.labels.size(); t++) count += q.labels[t] != -100;
    }
    return total / count;
  }

  // The analytic gradient entry `got` of weight `name`[idx] against the central difference (h = 1e-5); prints a miss.
  bool gradient_matches(const std::string& name, size_t idx, double got) {
    auto& vals = w.at(name);
    const double keep = vals[idx], h = 1e-5;
    vals[idx] = keep + h;
    const double lp = loss();
    vals[idx] = keep - h;
    const double lm = loss();
    vals[idx] = keep;
    const double num = (lp - lm) / (2 * h);
    if (std::fabs(got - num) <= 1e-6 + 1e-3 * std::fabs(num)) return true;
    std::printf("  %s[%zu]: analytic %.8g numeric %.8g\n", name.c_str(), idx, got, num);
    return false;
  }
};

void gradient_check(bool nf4, dpo::DpoLoss loss, float ls, double rtol) {
  TinySpec s;
  s.C = 32, s.F = 44, s.V = 61, s.L = 2;
  gradient_check_on(write_tiny_model(s), nf4, loss, ls, rtol);
}

}  // namespace

TEST_CASE(sigmoid_dpo_gradients_match_finite_differences) { gradient_check(false, dpo::DpoLoss::Sigmoid, 0.0f, 1e-3); }
TEST_CASE(sigmoid_label_smoothing_gradients) { gradient_check(false, dpo::DpoLoss::Sigmoid, 0.2f, 1e-3); }
TEST_CASE(robust_gradients) { gradient_check(false, dpo::DpoLoss::Robust, 0.1f, 1e-3); }
TEST_CASE(ipo_gradients) { gradient_check(false, dpo::DpoLoss::Ipo, 0.0f, 1e-3); }
TEST_CASE(hinge_gradients) { gradient_check(false, dpo::DpoLoss::Hinge, 0.0f, 1e-3); }
// The NF4 base computes its matmuls with bf16 inputs (docs/reference/linear4bit.md#prefill-and-training-path), so the
// tolerance reflects bf16 rounding.
TEST_CASE(nf4_base_gradients_match_finite_differences) { gradient_check(true, dpo::DpoLoss::Sigmoid, 0.0f, 0.05); }

// Qwen3's backward runs through the per-head q/k norms before RoPE; Llama 3.2's through its llama3 RoPE table. Their
// twins (published configs, vocabulary cut to 300 to keep the double reference fast) with LoRA on every linear.
TEST_CASE(qwen3_and_llama3_twins_lora_gradients_match_finite_differences) {
  for (const char* fam : {"qwen3-0.6b", "llama-3.2-1b-instruct"}) {
    dpo::testkit::TinyCheckpointOptions o;
    o.float32 = true;
    o.config_overrides = R"({"vocab_size": 300})";
    std::printf("  %s\n", fam);
    gradient_check_on(family_twin(fam, o), false, dpo::DpoLoss::Sigmoid, 0.0f, 1e-3);
  }
}

TEST_CASE(qwen3_qk_norm_weight_gradients_match_finite_differences) {
  // Full-parameter training updates q_norm / k_norm too: their gradients against central differences.
  dpo::testkit::TinyCheckpointOptions o;
  o.float32 = true;
  o.config_overrides = R"({"vocab_size": 300})";
  const TinyModel& tm = family_twin("qwen3-0.6b", o);
  const TinySpec& s = tm.spec;
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  auto pairs = sample_pairs(s.V);
  SftReference ref(tm, {pairs[0].chosen, pairs[1].rejected});
  const double loss = model->sft_accumulate(ref.batch, 2, 1.0f).first;
  CHECK_CLOSE(loss, ref.loss(), 1e-5, 1e-5);
  dpo::FullGrads& g = *model->impl().full;
  int checked = 0, bad = 0;
  for (int l = 0; l < s.L; l++)
    for (const bool is_q : {true, false}) {
      const std::string name =
          "model.layers." + std::to_string(l) + (is_q ? ".self_attn.q_norm.weight" : ".self_attn.k_norm.weight");
      const std::vector<float> grad = (is_q ? g.layers[size_t(l)].q_norm : g.layers[size_t(l)].k_norm).to_host();
      CHECK(int(grad.size()) == s.HD);
      for (int idx = 0; idx < s.HD; idx += 5) {
        checked++;
        bad += !ref.gradient_matches(name, size_t(idx), grad[size_t(idx)]);
      }
    }
  std::printf("  %d q/k norm weight gradient entries checked\n", checked);
  CHECK(bad == 0 && checked > 0);
}

TEST_CASE(fresh_adapter_starts_at_ln2_with_zero_rewards) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
  auto pairs = sample_pairs(s.V);
  // Reference = the same model with the adapter disabled (docs/reference/dpo-loss.md#reference-log-probs); with B = 0
  // the policy equals it exactly.
  model->attach_lora({});
  for (auto& p : pairs) {
    auto ref = model->logps({p.chosen, p.rejected}, 2, nullptr, false);
    p.ref_chosen = ref[0].logp;
    p.ref_rejected = ref[1].logp;
  }
  auto metrics = model->dpo_accumulate(pairs, 2, {});
  for (auto& mt : metrics) {
    CHECK(mt.loss == std::log(2.0));
    CHECK(mt.chosen_reward == 0.0);
    CHECK(mt.rejected_reward == 0.0);
  }
  // With B = 0 the gradient of A is exactly zero (docs/reference/hw6-run.md#the-first-two-steps-log-ln-2) while B's is
  // not.
  dpo::LoraAdapter& a = *model->impl().lora;
  double sumA = 0, sumB = 0;
  for (int l = 0; l < s.L; l++)
    for (int k : {0, 2}) {
      for (float g : a.at(l, k)->dA.to_host()) sumA += std::fabs(g);
      for (float g : a.at(l, k)->dB.to_host()) sumB += std::fabs(g);
    }
  CHECK(sumA == 0.0);
  CHECK(sumB > 0.0);
}

TEST_CASE(one_adamw_step_follows_the_double_precision_gradient) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  const int r = 4;
  auto before = attach_random_lora(*model, r, 8.0f, 9);
  auto pairs = sample_pairs(s.V);
  dpo::DpoOptions o;
  o.grad_scale = 0.125f;  // one of 8 accumulated micro-batches
  model->dpo_accumulate(pairs, 2, o);
  dpo::OptimizerOptions opt;
  opt.eight_bit = false;
  opt.lr = 1e-3f;
  opt.max_grad_norm = 0;
  const double gnorm = model->optimizer_step(opt);
  auto after = model->lora_tensors();

  MergedWeights W{tm, false, {}, 8.0 / r, r};
  for (auto& t : before) W.lora[t.name] = std::vector<double>(t.data.begin(), t.data.end());
  // First Adam step from zero state: update = lr * g / (|g| + eps), with g = 0.125 * dL/dθ (bias corrections cancel).
  int checked = 0, bad = 0;
  std::mt19937 pick(1);
  for (size_t ti = 0; ti < before.size(); ti += 3) {
    auto& vals = W.lora[before[ti].name];
    const size_t idx = pick() % vals.size();
    const double keep = vals[idx], h = 1e-5;
    vals[idx] = keep + h;
    const double lp = ref_batch_loss(s, W, pairs, o);
    vals[idx] = keep - h;
    const double lm = ref_batch_loss(s, W, pairs, o);
    vals[idx] = keep;
    const double g = 0.125 * (lp - lm) / (2 * h);
    if (std::fabs(g) < 1e-7) continue;  // Adam's sign-like step is ill-conditioned at g ~ eps
    const double want = keep - 1e-3 * g / (std::fabs(g) + 1e-8);
    checked++;
    if (std::fabs(after[ti].data[idx] - want) > 2e-6) {
      bad++;
      std::printf("  %s[%zu]: %.9g vs %.9g\n", before[ti].name.c_str(), idx, after[ti].data[idx], want);
    }
  }
  CHECK(checked > 5);
  CHECK(bad == 0);
  CHECK(gnorm > 0);
  // Gradients are zeroed after the step.
  for (int l = 0; l < s.L; l++)
    for (float g : model->impl().lora->at(l, 0)->dA.to_host()) CHECK(g == 0.0f);
}

TEST_CASE(lora_init_follows_torch_draw_order_and_bounds) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  dpo::LoraOptions lo;
  lo.targets = {"v_proj", "q_proj"};  // order given does not matter: modules are visited q, k, v, ... per layer
  lo.r = 4;
  lo.seed = 42;
  model->attach_lora(lo);
  auto t = model->lora_tensors();
  CHECK(t.size() == size_t(4 * s.L));
  CHECK(t[0].name == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  CHECK(t[2].name == "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight");
  // Independent replay: per module r*in draws (A), out*r (B), r*in (A again, kept).
  std::mt19937 g(42);
  auto draw = [&](double bound) { return double(g() & 0xFFFFFF) / 16777216.0 * 2 * bound - bound; };
  const int QD = s.NH * s.HD, KVD = s.NKV * s.HD;
  for (int i = 0; i < 4 * s.C; i++) draw(1);
  for (int i = 0; i < QD * 4; i++) draw(1);
  CHECK_CLOSE(t[0].data[0], draw(1.0 / std::sqrt(double(s.C))), 1e-7, 0);
  for (int i = 1; i < 4 * s.C; i++) draw(1);
  for (int i = 0; i < 4 * s.C + KVD * 4; i++) draw(1);  // v_proj: A default, B default
  CHECK_CLOSE(t[2].data[0], draw(1.0 / std::sqrt(double(s.C))), 1e-7, 0);
  for (float v : t[0].data) CHECK(std::fabs(v) <= 1.0f / std::sqrt(float(s.C)));
  for (float v : t[1].data) CHECK(v == 0.0f);

  // Round trip and validation.
  t[1].data[0] = 0.5f;
  model->set_lora_tensors(t);
  CHECK(model->lora_tensors()[1].data[0] == 0.5f);
  auto bad = t;
  bad[3].shape = {1, 2};
  CHECK_THROWS_CODE(model->set_lora_tensors(bad), dpo::ErrorCode::BadInput, "wrong shape");
  bad = t;
  bad.pop_back();
  CHECK_THROWS_CODE(model->set_lora_tensors(bad), dpo::ErrorCode::BadInput, "missing");
  model->detach_lora();
  CHECK(!model->has_lora());
  CHECK_THROWS_CODE(model->dpo_accumulate(sample_pairs(s.V), 2, {}), dpo::ErrorCode::BadInput, "attach");
}

TEST_CASE(adapter_changes_logps_as_the_merged_reference_says) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  auto tensors = attach_random_lora(*model, 4, 8.0f, 4);
  MergedWeights W{tm, false, {}, 2.0, 4};
  for (auto& t : tensors) W.lora[t.name] = std::vector<double>(t.data.begin(), t.data.end());
  WeightFn fn = [&W](const std::string& n) { return W(n); };
  WeightFn plain = [&tm](const std::string& n) {
    auto& v = tm.at(n);
    return std::vector<double>(v.begin(), v.end());
  };
  auto p = sample_pairs(s.V)[0];
  auto with = model->logps({p.chosen}, 2, nullptr, true)[0].logp;
  auto without = model->logps({p.chosen}, 2, nullptr, false)[0].logp;
  CHECK_CLOSE(with, seq_logp(s, fn, p.chosen, false), 2e-4, 1e-5);
  CHECK_CLOSE(without, seq_logp(s, plain, p.chosen, false), 2e-4, 1e-5);
  CHECK(std::fabs(with - without) > 1e-3);
}

TEST_CASE(sft_full_parameter_gradients_match_finite_differences) {
  TinySpec s;
  s.C = 32, s.F = 44, s.V = 61, s.L = 2;
  s.tied = true;  // the lm_head gradient then lands in the embedding
  TinyModel tm = write_tiny_model(s);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  auto pairs = sample_pairs(s.V);
  // Reference: mean cross-entropy over all labelled tokens, in double, with one weight perturbed.
  SftReference ref(tm, {pairs[0].chosen, pairs[1].rejected, pairs[0].rejected});
  const std::vector<dpo::ScoredSequence>& batch = ref.batch;
  auto [loss, n] = model->sft_accumulate(batch, 2, 1.0f);
  CHECK_CLOSE(loss, ref.loss(), 1e-5, 1e-5);
  dpo::FullGrads& g = *model->impl().full;
  struct Probe {
    std::string name;
    std::vector<float> grad;
  };
  std::vector<Probe> probes = {
      {"model.embed_tokens.weight", g.embed.to_host()},
      {"model.norm.weight", g.final_norm.to_host()},
      {"model.layers.0.input_layernorm.weight", g.layers[0].input_norm.to_host()},
      {"model.layers.1.post_attention_layernorm.weight", g.layers[1].post_norm.to_host()},
  };
  for (int k = 0; k < 7; k++)
    probes.push_back({std::string("model.layers.") + (k % 2 ? "1" : "0") + (k <= 3 ? ".self_attn." : ".mlp.") +
                          kKinds[k] + ".weight",
                      g.layers[size_t(k % 2)].lin[size_t(k)].dw.to_host()});
  std::mt19937 pick(2);
  int bad = 0, checked = 0;
  for (auto& pr : probes)
    for (int trial = 0; trial < 4; trial++) {
      // Embedding rows of tokens in the batch have gradients; pick among those for the embedding.
      size_t idx = pick() % ref.w.at(pr.name).size();
      if (pr.name == "model.embed_tokens.weight") idx = size_t(batch[0].ids[size_t(trial + 1)]) * s.C + pick() % s.C;
      checked++;
      bad += !ref.gradient_matches(pr.name, idx, pr.grad[idx]);
    }
  std::printf("  %d full-parameter gradient entries checked\n", checked);
  CHECK(bad == 0);

  // A few steps lower the loss; saved weights load back to the same model.
  dpo::OptimizerOptions opt;
  opt.eight_bit = false;
  opt.lr = 1e-2f;
  opt.max_grad_norm = 1.0f;
  model->sft_step(opt);
  double last = loss;
  for (int i = 0; i < 10; i++) {
    last = model->sft_accumulate(batch, 2, 1.0f).first;
    model->sft_step(opt);
  }
  std::printf("  sft loss %.4f -> %.4f\n", loss, last);
  CHECK(last < loss * 0.7);
  model->save_weights(tm.dir + "/model.safetensors", false);
  auto reloaded = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  auto a = model->logps(batch, 2), b = reloaded->logps(batch, 2);
  for (size_t i = 0; i < a.size(); i++) {
    CHECK(a[i].logp == b[i].logp);
    CHECK_CLOSE(a[i].logits_mean, b[i].logits_mean, 1e-6, 1e-5);  // the lm_head row sum follows the updates
  }
}

// The optimizer step on backend memory (norms, clipping, 8-bit and fp32 AdamW, lazily refreshed host copies of A
// and B) gives the CPU backend's adapter bit for bit, through an 8-bit -> fp32 switch. r = 128 makes the A tensors
// and q_proj's B 4096 elements (8-bit blockwise state) and v_proj's B 2048 (bnb's 32-bit path).
TEST_CASE(device_optimizer_step_equals_cpu) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto [cpu, guarded] = cpu_and_guarded(tm.dir);
  dpo::LoraOptions lo;
  lo.r = 128;
  lo.seed = 5;
  cpu->attach_lora(lo);
  guarded->attach_lora(lo);
  auto pairs = sample_pairs(s.V);
  dpo::DpoOptions o;
  o.grad_scale = 0.5f;
  dpo::OptimizerOptions opt;
  opt.lr = 1e-2f;
  opt.max_grad_norm = 0.05f;  // small enough to clip
  for (int step = 0; step < 5; step++) {
    if (step == 3) opt.eight_bit = false, opt.weight_decay = 0.1f;
    for (int micro = 0; micro < 2; micro++) {
      auto a = cpu->dpo_accumulate(pairs, 2, o), b = guarded->dpo_accumulate(pairs, 2, o);
      CHECK(a[0].loss == b[0].loss && a[1].loss == b[1].loss);
    }
    const double na = cpu->optimizer_step(opt), nb = guarded->optimizer_step(opt);
    CHECK(na == nb);
    CHECK(na > opt.max_grad_norm);
    CHECK(same_tensors(cpu->lora_tensors(), guarded->lora_tensors()));
    CHECK(same_tensors(cpu->lora_gradients(), guarded->lora_gradients()));  // both zeroed
  }
  // The adapter moved away from B = 0.
  bool moved = false;
  for (const auto& t : cpu->lora_tensors())
    if (t.name.find("lora_B") != std::string::npos)
      for (float v : t.data) moved = moved || v != 0.0f;
  CHECK(moved);
}

// An NF4 model with a bf16 lm_head keeps only the bf16 copy on the CPU: untied, its fp32 lm_head goes
// (DeviceWeights::release_fp32_lm_head, V x C x 4 bytes); tied, the embedding that was also lm_head is kept as bf16
// bits (keep_embedding_as_bf16, V x C x 2). DPO steps (logits and the input gradient through lm_head, the gathered
// embedding rows) and greedy tokens give the bits of a load that keeps the fp32 lm_head and computes through it
// (DPO_LM_HEAD_BF16=0).
TEST_CASE(nf4_model_without_fp32_lm_head_trains_the_same_bits) {
  for (bool tied : {false, true}) {
    TinySpec s;
    s.tied = tied;
    s.bf16_values = true;
    TinyModel tm = write_tiny_model(s);
    setenv("DPO_LM_HEAD_BF16", "0", 1);
    auto kept = dpo::Model::load(tm.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
    unsetenv("DPO_LM_HEAD_BF16");
    auto released = dpo::Model::load(tm.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
    const uint64_t head_bytes = uint64_t(s.V) * uint64_t(s.C) * (tied ? 2u : 4u);
    CHECK(released->info().resident_bytes + head_bytes == kept->info().resident_bytes);
    dpo::LoraOptions lo;
    lo.seed = 3;
    kept->attach_lora(lo);
    released->attach_lora(lo);
    const auto pairs = sample_pairs(s.V);
    dpo::OptimizerOptions opt;
    opt.lr = 1e-2f;
    for (int step = 0; step < 2; step++) {
      const auto a = kept->dpo_accumulate(pairs, 2, {}), b = released->dpo_accumulate(pairs, 2, {});
      for (size_t i = 0; i < a.size(); i++) CHECK(a[i].loss == b[i].loss && a[i].chosen_logp == b[i].chosen_logp);
      CHECK(kept->optimizer_step(opt) == released->optimizer_step(opt));
      CHECK(same_tensors(kept->lora_tensors(), released->lora_tensors()));
    }
    dpo::GenerateOptions g;
    g.max_new_tokens = 8;
    CHECK(kept->generate({{1, 5, 9}, {1, 7}}, g).tokens == released->generate({{1, 5, 9}, {1, 7}}, g).tokens);
  }
}

// Full-parameter steps on backend memory, untied embedding (FullGrads::embed_param) and tied: the host weights are
// refreshed after every step, so logps and saved weights agree with the CPU backend's bit for bit.
TEST_CASE(device_sft_step_equals_cpu) {
  for (const bool tied : {false, true}) {
    TinySpec s;
    s.tied = tied;
    TinyModel tm = write_tiny_model(s);
    auto [cpu, guarded] = cpu_and_guarded(tm.dir);
    auto pairs = sample_pairs(s.V);
    std::vector<dpo::ScoredSequence> batch = {pairs[0].chosen, pairs[1].rejected};
    dpo::OptimizerOptions opt;
    opt.eight_bit = false;
    opt.lr = 1e-2f;
    opt.weight_decay = 0.01f;
    for (int step = 0; step < 3; step++) {
      const auto la = cpu->sft_accumulate(batch, 2, 1.0f), lb = guarded->sft_accumulate(batch, 2, 1.0f);
      CHECK(la.first == lb.first);
      CHECK(cpu->sft_step(opt) == guarded->sft_step(opt));
    }
    const auto a = cpu->logps(batch, 2), b = guarded->logps(batch, 2);
    for (size_t i = 0; i < a.size(); i++) CHECK(a[i].logp == b[i].logp);
    // What the guarded model saves (its host copies) is the CPU model's weights.
    guarded->save_weights(tm.dir + "/model.safetensors", false);
    auto reloaded = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
    const auto c = reloaded->logps(batch, 2);
    for (size_t i = 0; i < a.size(); i++) CHECK(a[i].logp == c[i].logp);
  }
}

TEST_MAIN()
