// The tested families end to end on their tiny twins (real config fields, shrunk sizes; testkit): log-probs and greedy
// tokens against the independent double reference (family_model.h + reference_forward.h) in full precision, with NF4
// quantized at load, and from bitsandbytes *-bnb-4bit twins (which must keep every tensor they carry); RoPE scaling
// variants; checks that each family feature (llama3 RoPE, q/k norms, Qwen biases) changes the result, so the
// comparisons can fail; sliding windows refused past the window; leftover tensors refused; and check_model deciding
// exactly as loading does.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "core/half.h"
#include "dpo/engine.h"
#include "dpo/model_config.h"
#include "io/safetensors.h"
#include "family_model.h"
#include "json_write.h"
#include "model/weights.h"
#include "reference_forward.h"

using namespace dpo_test;
using dpo::testkit::TinyCheckpointOptions;

namespace {

const char* kFamilies[] = {"llama-3.2-1b-instruct",    "llama-3.1-8b-instruct",  "qwen2.5-0.5b-instruct", "qwen3-0.6b",
                           "mistral-7b-instruct-v0.3", "breeze-7b-instruct-v1_0"};

// Three sequences spread over the whole vocabulary (ids up to V - 1), the longest 40 tokens so that the low RoPE
// frequencies turn noticeably, with TRL-style labels (-100 on the prompt part).
std::vector<dpo::ScoredSequence> family_batch(int V) {
  std::vector<dpo::ScoredSequence> out;
  const int lengths[] = {40, 23, 31}, prompts[] = {12, 5, 9};
  for (int i = 0; i < 3; i++) {
    dpo::ScoredSequence s;
    for (int t = 0; t < lengths[i]; t++) s.ids.push_back(int((int64_t(t + 1) * 7919 * (i + 3) + 13 * i) % V));
    s.labels = s.ids;
    for (int t = 0; t < prompts[i]; t++) s.labels[size_t(t)] = -100;
    out.push_back(s);
  }
  return out;
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

WeightFn values_of(const TinyModel& m) {
  return [&m](const std::string& name) {
    const auto& v = m.at(name);
    return std::vector<double>(v.begin(), v.end());
  };
}

// What the engine multiplies by under NF4: quantized at load from a 16-bit checkpoint (fp16 cast, NF4, dequantized,
// bf16; tiny_model.h), or a bnb twin's stored NF4 (dequantized values, then bf16).
WeightFn nf4_values_of(const TinyModel& m, bool prequantized) {
  return [&m, prequantized](const std::string& name) {
    const auto& v = m.at(name);
    if (name.find("_proj.weight") == std::string::npos) return std::vector<double>(v.begin(), v.end());
    if (!prequantized) return nf4_engine_weights(m.spec, name, v);
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = dpo::round_bf16(v[i]);
    return out;
  };
}

// Reference log-prob sums of the batch, each sequence right-padded to the batch length as the engine pads it (the
// padded length is the call's length for dynamic RoPE, as in transformers).
std::vector<double> reference_logps(const TinySpec& s, const WeightFn& W, const std::vector<dpo::ScoredSequence>& b) {
  size_t T = 0;
  for (const auto& q : b) T = std::max(T, q.ids.size());
  std::vector<double> out;
  for (const auto& q : b) {
    std::vector<int> padded(q.ids.begin(), q.ids.end());
    padded.resize(T, 2);
    const auto logits = reference_logits(s, W, padded, int(q.ids.size()));
    double lp = 0;
    for (size_t t = 0; t + 1 < q.ids.size(); t++)
      if (q.labels[t + 1] != -100) lp += log_softmax_at(logits[t], q.labels[t + 1]);
    out.push_back(lp);
  }
  return out;
}

double max_diff(const std::vector<dpo::SequenceLogp>& got, const std::vector<double>& want) {
  double d = 0;
  for (size_t i = 0; i < want.size(); i++) d = std::max(d, std::fabs(got[i].logp - want[i]));
  return d;
}

// Engine log-probs vs the reference within atol + per_token * (scored tokens); returns the largest difference.
double check_family_logps(const char* what, dpo::Model& model, const TinyModel& m, const WeightFn& W, double atol,
                          double per_token) {
  const auto batch = family_batch(m.spec.V);
  const auto got = model.logps(batch, 2);
  const auto want = reference_logps(m.spec, W, batch);
  for (size_t i = 0; i < want.size(); i++) CHECK_CLOSE(got[i].logp, want[i], atol + per_token * got[i].tokens, 0);
  const double d = max_diff(got, want);
  std::printf("  %-42s logp %10.4f (ref %10.4f), max |diff| %.2e\n", what, got[0].logp, want[0], d);
  return d;
}

// Greedy continuation of a prompt: every engine token is the reference's argmax at its position (within tol).
void check_family_greedy(dpo::Model& model, const TinyModel& m, const WeightFn& W, double tol) {
  std::vector<int32_t> prompt;
  for (int t = 0; t < 9; t++) prompt.push_back(int32_t((int64_t(t + 2) * 104729) % m.spec.V));
  dpo::GenerateOptions opt;
  opt.max_new_tokens = 6;
  const auto out = model.generate({prompt}, opt);
  std::vector<int> seq(prompt.begin(), prompt.end());
  seq.insert(seq.end(), out.tokens[0].begin(), out.tokens[0].end());
  const auto logits = reference_logits(m.spec, W, seq, int(seq.size()));
  for (size_t k = 0; k < out.tokens[0].size(); k++) {
    const auto& row = logits[prompt.size() - 1 + k];
    const double best = *std::max_element(row.begin(), row.end());
    CHECK(row[size_t(out.tokens[0][k])] >= best - tol);
  }
}

std::unique_ptr<dpo::Model> load(const TinyModel& m, dpo::QuantMode q) {
  return dpo::Model::load(m.dir, {q, dpo::BackendChoice::Cpu});
}

// Largest per-token |difference| of two models' log-probs on the family batch.
double per_token_gap(dpo::Model& a, dpo::Model& b, int V) {
  const auto batch = family_batch(V);
  const auto x = a.logps(batch, 2), y = b.logps(batch, 2);
  double worst = 0;
  for (size_t i = 0; i < x.size(); i++) worst = std::max(worst, std::fabs(x[i].logp - y[i].logp) / x[i].tokens);
  return worst;
}

// Replaces config.json fields of a written twin (the checkpoint stays as written).
void edit_config(const TinyModel& m, const std::string& overrides) {
  dpo::json::Value cfg = dpo::json::parse(read_file_text(m.dir + "/config.json"));
  const dpo::json::Value extra = dpo::json::parse(overrides);
  for (const std::string& k : extra.keys()) cfg = dpo::testkit::json_with(cfg, k, *extra.find(k));
  std::ofstream(m.dir + "/config.json") << dpo::testkit::json_dump(cfg);
}

}  // namespace

TEST_CASE(full_precision_twins_match_the_double_reference) {
  for (const char* fam : kFamilies) {
    TinyCheckpointOptions o;
    o.float32 = true;
    const TinyModel& m = family_twin(fam, o);
    auto model = load(m, dpo::QuantMode::None);
    check_family_logps(fam, *model, m, values_of(m), 2e-4, 1e-5);
    check_family_greedy(*model, m, values_of(m), 1e-4);
  }
}

TEST_CASE(nf4_at_load_follows_the_dequantized_reference) {
  // bf16 twins quantized by the engine; the reference uses the dequantized weights and differs by the bf16
  // activations of the 4-bit matmuls (docs/reference/linear4bit.md#prefill-and-training-path): a few thousandths of a
  // nat per token.
  for (const char* fam : kFamilies) {
    const TinyModel& m = family_twin(fam);
    auto model = load(m, dpo::QuantMode::Nf4);
    check_family_logps((std::string(fam) + " nf4").c_str(), *model, m, nf4_values_of(m, false), 0.01, 0.005);
    check_family_greedy(*model, m, nf4_values_of(m, false), 0.05);
  }
}

TEST_CASE(bnb_4bit_twins_keep_every_tensor_and_stay_within_nf4_error_of_bf16) {
  for (const char* fam : kFamilies) {
    TinyCheckpointOptions o;
    o.bnb_4bit = true;
    const TinyModel& pre = family_twin(fam, o);
    const TinyModel& bf16 = family_twin(fam);  // the same seed: the same weights before quantization
    auto model = load(pre, dpo::QuantMode::Nf4);
    CHECK(model->info().quantized_linears == 7 * pre.spec.L);
    CHECK(model->info().config.prequantized);
    check_family_logps((std::string(fam) + " bnb-4bit").c_str(), *model, pre, nf4_values_of(pre, true), 0.01, 0.005);
    check_family_greedy(*model, pre, nf4_values_of(pre, true), 0.05);
    // Against its bf16 twin in full precision: NF4's error, as large as quantizing the bf16 twin at load gives.
    auto full = load(bf16, dpo::QuantMode::None), at_load = load(bf16, dpo::QuantMode::Nf4);
    const double bnb_gap = per_token_gap(*model, *full, pre.spec.V);
    const double load_gap = per_token_gap(*at_load, *full, pre.spec.V);
    std::printf("  %-42s vs bf16 twin: %.4f nat/token (NF4 at load: %.4f)\n", fam, bnb_gap, load_gap);
    CHECK(bnb_gap > 0 && bnb_gap <= 1.5 * load_gap + 0.02);
  }
}

TEST_CASE(each_family_feature_changes_the_result) {
  // If the engine ignored a feature, these references would match it instead: each must be far off.
  struct Case {
    const char* fam;
    const char* what;
    void (*drop)(TinySpec&);
  };
  const Case cases[] = {
      {"llama-3.2-1b-instruct", "llama3 RoPE scaling", [](TinySpec& s) { s.inv_freq = nullptr; }},
      {"qwen3-0.6b", "q/k norms", [](TinySpec& s) { s.qk_norm = false; }},
      {"qwen2.5-0.5b-instruct", "q/k/v biases", [](TinySpec& s) { s.qkv_bias = false; }},
  };
  for (const Case& c : cases) {
    TinyCheckpointOptions o;
    o.bnb_4bit = std::string(c.fam) == "qwen2.5-0.5b-instruct";  // the biases of a bnb twin in particular
    o.float32 = !o.bnb_4bit;
    const TinyModel& m = family_twin(c.fam, o);
    TinySpec without = m.spec;
    c.drop(without);
    auto model =
        dpo::Model::load(m.dir, {o.bnb_4bit ? dpo::QuantMode::Nf4 : dpo::QuantMode::None, dpo::BackendChoice::Cpu});
    const auto batch = family_batch(m.spec.V);
    const auto got = model->logps(batch, 2);
    const WeightFn W = o.bnb_4bit ? nf4_values_of(m, true) : values_of(m);
    const double with_feature = max_diff(got, reference_logps(m.spec, W, batch));
    const double without_feature = max_diff(got, reference_logps(without, W, batch));
    std::printf("  %-22s %-20s reference with it %.2e, without it %.2e\n", c.fam, c.what, with_feature,
                without_feature);
    CHECK(without_feature > 10 * with_feature && without_feature > 0.1);
  }
}

TEST_CASE(tied_head_and_head_dim_combinations_match_the_reference) {
  // Every pairing of a tied or untied head with a derived head_dim or one that differs from hidden / heads, on the
  // untied Llama 3.1 twin (no head_dim) and the tied Qwen3 twin (head_dim 16, hidden/heads 8; absent means
  // Qwen3Config's 128). A small vocabulary keeps the double reference quick; the shapes follow the config.
  const char* cases[][2] = {
      {"llama-3.1-8b-instruct", R"({"vocab_size": 300, "tie_word_embeddings": true})"},
      {"llama-3.1-8b-instruct", R"({"vocab_size": 300, "head_dim": 32})"},
      {"llama-3.1-8b-instruct", R"({"vocab_size": 300, "head_dim": 32, "tie_word_embeddings": true})"},
      {"qwen3-0.6b", R"({"vocab_size": 300, "tie_word_embeddings": false})"},
      {"qwen3-0.6b", R"({"vocab_size": 300, "head_dim": null})"},
      {"qwen3-0.6b", R"({"vocab_size": 300, "head_dim": null, "tie_word_embeddings": false})"},
  };
  for (const auto& c : cases) {
    TinyCheckpointOptions o;
    o.float32 = true;
    o.config_overrides = c[1];
    const TinyModel& m = family_twin(c[0], o);
    auto model = load(m, dpo::QuantMode::None);
    CHECK(model->info().config.tie_embeddings == m.spec.tied && model->info().config.head_dim == m.spec.HD);
    check_family_logps((std::string(c[0]) + " " + c[1]).c_str(), *model, m, values_of(m), 2e-4, 1e-5);
    check_family_greedy(*model, m, values_of(m), 1e-4);
  }
}

TEST_CASE(scaled_rope_variants_match_the_reference) {
  // The Llama 3.2 twin with each RoPE scaling the engine computes (and transformers 5's spelling).
  const char* blocks[] = {
      R"({"rope_scaling": {"rope_type": "linear", "factor": 4.0}})",
      R"({"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}})",
      R"({"rope_scaling": {"rope_type": "yarn", "factor": 8.0, "mscale": 1.0, "mscale_all_dim": 0.5,
          "original_max_position_embeddings": 16, "beta_fast": 8}})",
      R"({"rope_scaling": {"rope_type": "dynamic", "factor": 3.0}, "max_position_embeddings": 16})",
      R"({"rope_scaling": null, "rope_theta": null, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
          "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})",
  };
  for (const char* block : blocks) {
    TinyCheckpointOptions o;
    o.float32 = true;
    o.config_overrides = block;
    const TinyModel& m = family_twin("llama-3.2-1b-instruct", o);
    auto model = load(m, dpo::QuantMode::None);
    check_family_logps(block + 17, *model, m, values_of(m), 2e-4, 1e-5);
    check_family_greedy(*model, m, values_of(m), 1e-4);
  }
}

TEST_CASE(sliding_windows_are_refused_past_the_window) {
  TinyCheckpointOptions o;
  o.config_overrides = R"({"sliding_window": 12})";
  const TinyModel& m = family_twin("breeze-7b-instruct-v1_0", o);
  auto model = dpo::Model::load(m.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  dpo::ScoredSequence fits, longer;
  for (int t = 0; t < 12; t++) fits.ids.push_back(100 + t);
  fits.labels = fits.ids;
  longer = fits;
  longer.ids.push_back(7);
  longer.labels.push_back(7);
  CHECK(model->logps({fits}, 2).size() == 1);
  CHECK_THROWS_CODE(model->logps({longer}, 2), dpo::ErrorCode::BadInput,
                    "13 tokens is longer than this model's sliding window of 12 (config.json sliding_window)");
  dpo::GenerateOptions opt;
  opt.max_new_tokens = 4;
  CHECK(model->generate({{1, 2, 3, 4, 5, 6, 7, 8}}, opt).tokens[0].size() == 4);
  opt.max_new_tokens = 5;
  CHECK_THROWS_CODE(model->generate({{1, 2, 3, 4, 5, 6, 7, 8}}, opt), dpo::ErrorCode::BadInput,
                    "prompt plus max_new_tokens of 13 tokens");
  // Qwen2.5 slides only with use_sliding_window, on layers from max_window_layers on.
  o.config_overrides = R"({"use_sliding_window": true, "sliding_window": 12, "max_window_layers": 1})";
  const TinyModel& q = family_twin("qwen2.5-0.5b-instruct", o);
  auto qm = dpo::Model::load(q.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  CHECK_THROWS_CODE(qm->logps({longer}, 2), dpo::ErrorCode::BadInput, "sliding window of 12");
  o.config_overrides = R"({"use_sliding_window": false, "sliding_window": 12})";
  const TinyModel& q2 = family_twin("qwen2.5-0.5b-instruct", o);
  CHECK(dpo::Model::load(q2.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu})->logps({longer}, 2).size() == 1);
}

TEST_CASE(bnb_twin_with_a_skipped_linear_keeps_it_in_16_bits) {
  // bitsandbytes leaves llm_int8_skip_modules unquantized; the engine keeps such a linear in full precision too.
  TinyCheckpointOptions o;
  o.bnb_4bit = true;
  o.bnb_skip = {"model.layers.0.mlp.down_proj"};
  const TinyModel& m = family_twin("qwen3-0.6b", o);
  auto model = load(m, dpo::QuantMode::Nf4);
  CHECK(model->info().quantized_linears == 7 * m.spec.L - 1);
  WeightFn W = [&m](const std::string& name) {
    const auto& v = m.at(name);
    const bool nf4 = name.find("_proj.weight") != std::string::npos && name != "model.layers.0.mlp.down_proj.weight";
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = nf4 ? dpo::round_bf16(v[i]) : double(v[i]);
    return out;
  };
  check_family_logps("qwen3 bnb, one linear skipped", *model, m, W, 0.01, 0.005);
}

TEST_CASE(leftover_tensors_are_refused_and_check_model_agrees_with_load) {
  // A Qwen3 checkpoint labelled Llama would silently lose its q/k norms: refused, naming the tensor.
  TinyCheckpointOptions other_seed;
  other_seed.seed = 99;  // a twin of its own: its config is edited below
  const TinyModel& relabelled = family_twin("qwen3-0.6b", other_seed);
  edit_config(relabelled, R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})");
  CHECK_THROWS_CODE(dpo::Model::load(relabelled.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu}),
                    dpo::ErrorCode::BadModel, "self_attn.k_norm.weight");
  const dpo::ModelCheck bad = dpo::check_model(relabelled.dir);
  CHECK(!bad.ok && bad.error_code == "E_BAD_MODEL" && bad.config_read);
  CHECK(bad.message.find("is not part of a LlamaForCausalLM model") != std::string::npos);
  // Every twin checks as loadable, with the loader's counts.
  for (const char* fam : kFamilies)
    for (const bool bnb : {false, true}) {
      TinyCheckpointOptions b;
      b.bnb_4bit = bnb;
      const TinyModel& m = family_twin(fam, b);
      const dpo::ModelCheck ok = dpo::check_model(m.dir, dpo::QuantMode::Nf4);
      auto model = dpo::Model::load(m.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
      CHECK(ok.ok && ok.message.empty());
      CHECK(ok.n_params == model->info().n_params && ok.checkpoint_bytes == model->info().checkpoint_bytes);
      CHECK(ok.quantized_linears == model->info().quantized_linears);
    }
  // An unsupported architecture: check_model reports it without a config.
  const TinyModel& gemma = family_twin("llama-3.2-1b-instruct", other_seed);
  edit_config(gemma, R"({"architectures": ["Gemma2ForCausalLM"]})");
  const dpo::ModelCheck g = dpo::check_model(gemma.dir);
  CHECK(!g.ok && !g.config_read && g.message.find("Gemma 2 is not supported") != std::string::npos);
}

TEST_CASE(nf4_load_keeps_an_untied_bf16_embedding_as_its_bits) {
  // An untied bf16 checkpoint loaded as NF4 holds its embedding as the file's bf16 bits, without an fp32 copy
  // (docs/cpu-kernels.md#bf16-lm_head); loaded with --quant none, as fp32. The values are the same, and the resident
  // bytes count 2 per value. A tied model keeps fp32 at load (its embedding is also lm_head's source).
  int untied = 0;
  for (const char* name : {"llama-3.1-8b-instruct", "qwen2.5-0.5b-instruct"}) {
    const TinyModel& t = family_twin(name);
    const dpo::ModelConfig c = dpo::load_model_config(t.dir);
    const dpo::WeightSet ws(t.dir);
    dpo::LoadStats nf4_stats, full_stats;
    const dpo::ModelWeights nf4 = dpo::load_weights(c, ws, true, nf4_stats, nullptr);
    const dpo::ModelWeights full = dpo::load_weights(c, ws, false, full_stats, nullptr);
    const size_t n = size_t(c.vocab) * size_t(c.hidden);
    CHECK(full.embed.size() == n && full.embed_bf16.empty());
    if (c.tie_embeddings) {
      CHECK(nf4.embed.size() == n && nf4.embed_bf16.empty());
      continue;
    }
    untied++;
    CHECK(nf4.embed.empty() && nf4.embed_bf16.size() == n);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
      bad += dpo::f32_bits(dpo::bf16_to_f32(nf4.embed_bf16[i])) != dpo::f32_bits(full.embed[i]);
    CHECK(bad == 0);
    uint64_t linears = 0;
    for (const dpo::LayerWeights& L : nf4.layers)
      for (const dpo::Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) linears += l->resident_bytes();
    uint64_t rest = 0;
    for (const dpo::LayerWeights& L : nf4.layers)
      rest += (L.input_norm.size() + L.post_norm.size() + L.q_norm.size() + L.k_norm.size()) * sizeof(float);
    CHECK(nf4_stats.resident_bytes ==
          linears + rest + n * 2 + (nf4.final_norm.size() + nf4.lm_head.size()) * sizeof(float));
  }
  CHECK(untied == 1);
}

TEST_MAIN()
