// End-to-end engine checks on tiny generated models against the double-precision reference forward:
// log-prob sums and per-token log-probs with TRL masking and padding, Qwen2 biases + tied embeddings, NF4 weights,
// greedy generation (batched == one at a time, EOS, cancel), the real stories260K greedy text, and bad checkpoints.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "check.h"
#include "cpu/nf4_gemv_table_budget.h"
#include "core/half.h"
#include "dpo/engine.h"
#include "quant/nf4.h"
#include "reference_forward.h"
#include "scored_pairs.h"
#include "tiny_model.h"

using namespace dpo_test;

namespace {

std::string shared_dir() {
  const char* s = std::getenv("DPO_SHARED");
  return s ? s : "../../shared";
}

WeightFn fp32_weights(const TinyModel& m) {
  return [&m](const std::string& name) {
    const auto& v = m.at(name);
    return std::vector<double>(v.begin(), v.end());
  };
}

// What the engine computes with under --quant nf4: linear weights fp16-cast, NF4-quantized, dequantized and
// rounded to bf16 (docs/reference/linear4bit.md#prefill-and-training-path, docs/reference/precision.md#loading);
// everything else stays fp32.
WeightFn nf4_weights(const TinyModel& m) {
  return [&m](const std::string& name) {
    const auto& v = m.at(name);
    bool linear = name.find("_proj.weight") != std::string::npos;
    if (!linear) return std::vector<double>(v.begin(), v.end());
    return nf4_engine_weights(m.spec, name, v);
  };
}

struct Batch {
  std::vector<dpo::ScoredSequence> seqs;
};

Batch sample_batch(int V) {
  Batch b;
  const std::vector<std::vector<int>> ids = {
      {1, 5, 9, 33, 12}, {1, 7, 7, 40, 3, 22, 18, 9, 60}, {1, 4, 50, 2, 11, 30, 8}};
  const std::vector<int> prompt_len = {2, 4, 3};
  for (size_t i = 0; i < ids.size(); i++) {
    dpo::ScoredSequence s;
    for (int id : ids[i]) s.ids.push_back(id % V);
    s.labels = s.ids;
    for (int t = 0; t < prompt_len[i]; t++) s.labels[size_t(t)] = -100;
    b.seqs.push_back(s);
  }
  return b;
}

// Reference logp sums and logits means for a right-padded batch (pad id 2).
void check_logps_against_reference(const TinyModel& m, const WeightFn& W, dpo::QuantMode quant, double atol,
                                   double rtol) {
  auto model = dpo::Model::load(m.dir, {quant, dpo::BackendChoice::Cpu});
  Batch b = sample_batch(m.spec.V);
  auto got = model->logps(b.seqs, 2);
  CHECK(got.size() == b.seqs.size());
  size_t T = 0;
  for (auto& s : b.seqs) T = std::max(T, s.ids.size());
  for (size_t i = 0; i < b.seqs.size(); i++) {
    const auto& s = b.seqs[i];
    std::vector<int> padded(s.ids.begin(), s.ids.end());
    padded.resize(T, 2);
    auto logits = reference_logits(m.spec, W, padded, int(s.ids.size()));
    double want = 0, mean = 0;
    int n = 0;
    CHECK(got[i].token_logps.size() == size_t(got[i].tokens));
    for (size_t t = 0; t + 1 < s.ids.size(); t++)
      if (s.labels[t + 1] != -100) {
        const double tok = log_softmax_at(logits[t], s.labels[t + 1]);
        // Each token's log-prob against the reference, in sequence order.
        if (size_t(n) < got[i].token_logps.size()) CHECK_CLOSE(got[i].token_logps[size_t(n)], tok, atol, rtol);
        want += tok;
        n++;
      }
    // The per-token values summed in order in double are the sequence's log-prob, bit for bit (docs/insights.md).
    double sum = 0;
    for (float v : got[i].token_logps) sum += v;
    CHECK(sum == got[i].logp);
    for (auto& row : logits)
      for (double v : row) mean += v;
    mean /= double(T) * m.spec.V;
    CHECK_CLOSE(got[i].logp, want, atol, rtol);
    CHECK(got[i].tokens == n);
    CHECK_CLOSE(got[i].logits_mean, mean, atol, rtol);
  }
}

}  // namespace

TEST_CASE(llama_gqa_untied_logps_match_double_reference) {
  TinySpec s;
  TinyModel m = write_tiny_model(s);
  check_logps_against_reference(m, fp32_weights(m), dpo::QuantMode::None, 2e-4, 1e-5);
}

TEST_CASE(qwen2_biases_tied_embeddings_logps_match_double_reference) {
  TinySpec s;
  s.arch = "Qwen2ForCausalLM";
  s.qkv_bias = true;
  s.tied = true;
  s.NH = 6;
  s.NKV = 2;
  s.F = 40;
  s.theta = 1000000.0f;
  s.seed = 11;
  TinyModel m = write_tiny_model(s);
  check_logps_against_reference(m, fp32_weights(m), dpo::QuantMode::None, 2e-4, 1e-5);
}

TEST_CASE(nf4_model_logps_follow_the_dequantized_reference) {
  TinySpec s;
  s.C = 64;
  s.F = 172;  // FFN blocks of 64 cross rows, as in stories260K
  TinyModel m = write_tiny_model(s);
  auto model = dpo::Model::load(m.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
  CHECK(model->info().quantized_linears == 7 * s.L);
  CHECK(model->info().resident_bytes < model->info().checkpoint_bytes);
  // bf16 activations inside the 4-bit matmuls are the only difference from the reference.
  check_logps_against_reference(m, nf4_weights(m), dpo::QuantMode::Nf4, 0.05, 0.01);
}

TEST_CASE(batched_generation_equals_one_at_a_time) {
  TinySpec s;
  s.C = 64;
  s.F = 172;
  TinyModel m = write_tiny_model(s);
  for (dpo::QuantMode q : {dpo::QuantMode::None, dpo::QuantMode::Nf4}) {
    auto model = dpo::Model::load(m.dir, {q, dpo::BackendChoice::Cpu});
    const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9}, {1, 7, 7, 40, 3, 22, 18}, {1}, {1, 4, 50, 2, 11}};
    dpo::GenerateOptions opt;
    opt.max_new_tokens = 12;
    std::vector<std::pair<int, int>> streamed;
    auto batched = model->generate(prompts, opt, [&](int seq, int32_t tok) { streamed.push_back({seq, tok}); });
    size_t total = 0;
    for (size_t i = 0; i < prompts.size(); i++) {
      auto alone = model->generate({prompts[i]}, opt);
      CHECK(alone.tokens[0] == batched.tokens[i]);
      CHECK(batched.tokens[i].size() == 12);
      CHECK(batched.finish[i] == "length");
      total += batched.tokens[i].size();
    }
    CHECK(streamed.size() == total);
    // The first token is the argmax of the last prompt position's logits (within float noise of the reference).
    auto logits = reference_logits(s, q == dpo::QuantMode::None ? fp32_weights(m) : nf4_weights(m), {1, 5, 9}, 3);
    const auto& row = logits[2];
    double best = row[0];
    for (double v : row) best = std::max(best, v);
    CHECK(row[size_t(batched.tokens[0][0])] >= best - (q == dpo::QuantMode::None ? 1e-4 : 0.05));
  }
}

TEST_CASE(batched_logps_equal_one_at_a_time) {
  // The trainer scores reference log-probs many pairs per call: padding to a longer batch must not change a bit.
  TinySpec s;
  s.C = 64;
  s.F = 172;
  TinyModel m = write_tiny_model(s);
  for (dpo::QuantMode q : {dpo::QuantMode::None, dpo::QuantMode::Nf4}) {
    auto model = dpo::Model::load(m.dir, {q, dpo::BackendChoice::Cpu});
    const std::vector<dpo::ScoredSequence> batch = {scored({1, 5, 9, 33}, 2, s.V),
                                                    scored({1, 7, 7, 40, 3, 22, 18, 2, 9}, 3, s.V),
                                                    scored({1, 4}, 1, s.V), scored({1, 4, 50, 2, 11, 12}, 4, s.V)};
    const auto together = model->logps(batch, 2, nullptr, false);
    for (size_t i = 0; i < batch.size(); i++) {
      const auto alone = model->logps({batch[i]}, 2, nullptr, false);
      CHECK(alone[0].logp == together[i].logp);
      CHECK(alone[0].tokens == together[i].tokens);
      CHECK(alone[0].token_logps == together[i].token_logps);
    }
  }
}

TEST_CASE(bf16_lm_head_gives_the_same_bits_as_fp32) {
  // A checkpoint whose lm_head holds bf16 values is kept as bf16 on the CPU (docs/cpu-kernels.md): generation and
  // log-probs (with their per-token values) must not change by a bit, untied and tied, NF4 and fp32 bases.
  for (bool tied : {false, true}) {
    TinySpec s;
    s.C = 64;
    s.F = 172;
    s.tied = tied;
    s.bf16_values = true;
    TinyModel m = write_tiny_model(s);
    for (dpo::QuantMode q : {dpo::QuantMode::None, dpo::QuantMode::Nf4}) {
      setenv("DPO_LM_HEAD_BF16", "0", 1);
      auto fp32_head = dpo::Model::load(m.dir, {q, dpo::BackendChoice::Cpu});
      unsetenv("DPO_LM_HEAD_BF16");
      auto bf16_head = dpo::Model::load(m.dir, {q, dpo::BackendChoice::Cpu});
      // The bf16 copy exists: V x C two-byte values more in backend memory. An NF4 model then frees its fp32
      // lm_head: untied, the lm_head (DeviceWeights::release_fp32_lm_head); tied, the embedding, kept as bf16 bits
      // (keep_embedding_as_bf16; untied, both loads keep it so). The backend's copy of the fp32 lm_head goes with
      // it where the backend keeps one (the guarded backend; the CPU one computes from the host copy).
      const uint64_t bf16_bytes = uint64_t(s.V) * uint64_t(s.C) * 2u, head_bytes = 2 * bf16_bytes;
      const bool nf4 = q == dpo::QuantMode::Nf4;
      CHECK(fp32_head->info().resident_bytes - bf16_head->info().resident_bytes ==
            (nf4 ? (tied ? bf16_bytes : head_bytes) : 0));
      const uint64_t with = bf16_head->memory_stats().in_use_bytes, without = fp32_head->memory_stats().in_use_bytes;
      CHECK(with == without + bf16_bytes || (nf4 && with + head_bytes == without + bf16_bytes));
      const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9}, {1, 7, 7, 40, 3, 22, 18}, {1}};
      dpo::GenerateOptions opt;
      opt.max_new_tokens = 10;
      CHECK(fp32_head->generate(prompts, opt).tokens == bf16_head->generate(prompts, opt).tokens);
      const std::vector<dpo::ScoredSequence> batch = {scored({1, 5, 9, 33}, 2, s.V),
                                                      scored({1, 7, 7, 40, 3, 22, 18, 2, 9}, 3, s.V)};
      const auto a = fp32_head->logps(batch, 2, nullptr, false), b = bf16_head->logps(batch, 2, nullptr, false);
      for (size_t i = 0; i < batch.size(); i++) {
        CHECK(a[i].logp == b[i].logp);
        CHECK(a[i].token_logps == b[i].token_logps);
      }
    }
  }
}

TEST_CASE(greedy_sketch_gives_the_tokens_of_every_logit) {
  // With a bf16 lm_head the CPU backend finds greedy tokens through an int8 sketch and rescores a few rows
  // (docs/cpu-kernels.md#greedy-tokens-from-an-int8-sketch): the tokens must be those of every logit's argmax, for
  // NF4 and fp32 bases, batched and not, over long enough answers for the hidden states to wander.
  TinySpec s;
  s.C = 64;
  s.F = 172;
  s.V = 1500;
  s.bf16_values = true;
  TinyModel m = write_tiny_model(s);
  for (dpo::QuantMode q : {dpo::QuantMode::None, dpo::QuantMode::Nf4}) {
    setenv("DPO_GREEDY_SKETCH", "0", 1);
    auto every_logit = dpo::Model::load(m.dir, {q, dpo::BackendChoice::Cpu});
    unsetenv("DPO_GREEDY_SKETCH");
    const int64_t caches = dpo::cpu::nf4_gemv_tables_in_use();
    auto sketched = dpo::Model::load(m.dir, {q, dpo::BackendChoice::Cpu});
    // The sketch exists (V x C bytes and 12 per row of the decode-cache budget) unless the budget is too small.
    const int64_t sketch_bytes = int64_t(s.V) * s.C + int64_t(s.V) * 12;
    if (dpo::cpu::nf4_gemv_table_budget() - caches >= sketch_bytes + (int64_t(1) << 20))
      CHECK(dpo::cpu::nf4_gemv_tables_in_use() - caches >= sketch_bytes);
    const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9}, {1, 7, 7, 40, 3, 22, 18}, {1}, {1, 1400, 2, 2}};
    dpo::GenerateOptions opt;
    opt.max_new_tokens = 40;
    const auto want = every_logit->generate(prompts, opt).tokens;
    CHECK(sketched->generate(prompts, opt).tokens == want);
    for (size_t i = 0; i < prompts.size(); i++) CHECK(sketched->generate({prompts[i]}, opt).tokens[0] == want[i]);
  }
}

TEST_CASE(generation_stops_at_eos_and_on_cancel) {
  TinySpec s;
  TinyModel m = write_tiny_model(s);
  auto model = dpo::Model::load(m.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  dpo::GenerateOptions opt;
  opt.max_new_tokens = 10;
  auto free_run = model->generate({{1, 3, 5}}, opt);
  const int32_t stop = free_run.tokens[0][3];
  size_t first = 0;
  while (free_run.tokens[0][first] != stop) first++;
  opt.eos_ids = {stop};
  auto stopped = model->generate({{1, 3, 5}}, opt);
  CHECK(stopped.finish[0] == "eos");
  CHECK(stopped.tokens[0].size() == first + 1);
  CHECK(stopped.tokens[0].back() == stop);

  std::atomic<bool> cancel{false};
  opt.eos_ids = {};
  int seen = 0;
  auto cancelled = model->generate(
      {{1, 3, 5}}, opt,
      [&](int, int32_t) {
        if (++seen == 2) cancel = true;
      },
      &cancel);
  CHECK(cancelled.finish[0] == "cancelled");
  CHECK(cancelled.tokens[0].size() == 2);
  CHECK_THROWS_CODE(model->logps(sample_batch(s.V).seqs, 2, &cancel), dpo::ErrorCode::Cancelled, "cancelled");
}

// Nothing runs attention past max_position_embeddings: too many new tokens or a prompt that fills the context are
// E_TOO_LONG, an answer stops where prompt + answer fill the context ("context"), and so does scoring.
TEST_CASE(the_context_is_never_exceeded) {
  TinySpec s;
  s.max_position = 12;
  TinyModel m = write_tiny_model(s);
  auto model = dpo::Model::load(m.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  dpo::GenerateOptions opt;
  opt.max_new_tokens = 13;
  CHECK_THROWS_CODE(model->generate({{1, 3, 5}}, opt), dpo::ErrorCode::TooLong,
                    "more than the model's context (12 tokens");
  opt.max_new_tokens = 2147483647;
  CHECK_THROWS_CODE(model->generate({{1, 3, 5}}, opt), dpo::ErrorCode::TooLong,
                    "max_new_tokens 2147483647 is more than");
  opt.max_new_tokens = 4;
  CHECK_THROWS_CODE(model->generate({{1, 3, 5}, std::vector<int32_t>(12, 7)}, opt), dpo::ErrorCode::TooLong,
                    "prompt 1 has 12 tokens, which leaves no room for an answer");

  // Prompts of 3 and 10 tokens, 12 new tokens allowed: the long one stops after 2 (3 + 9 = 12 = the context).
  opt.max_new_tokens = 12;
  const std::vector<std::vector<int32_t>> prompts = {{1, 3, 5}, {1, 3, 5, 7, 9, 11, 13, 15, 17, 19}};
  auto out = model->generate(prompts, opt);
  CHECK(out.finish[0] == "context" && out.tokens[0].size() == 9);
  CHECK(out.finish[1] == "context" && out.tokens[1].size() == 2);
  // The tokens that fit are the ones an unlimited model would give (the limit cuts, it does not change them).
  TinySpec open = s;
  open.max_position = 0;
  TinyModel m2 = write_tiny_model(open);
  auto unlimited = dpo::Model::load(m2.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu})->generate(prompts, opt);
  CHECK(std::equal(out.tokens[1].begin(), out.tokens[1].end(), unlimited.tokens[1].begin()));
  CHECK(std::equal(out.tokens[0].begin(), out.tokens[0].end(), unlimited.tokens[0].begin()));

  dpo::ScoredSequence longer;
  longer.ids = std::vector<int32_t>(13, 4);
  longer.labels = longer.ids;
  CHECK_THROWS_CODE(model->logps({longer}, 2), dpo::ErrorCode::TooLong,
                    "sequence 0 has 13 tokens, more than the model's context");
  longer.ids.resize(12);
  longer.labels.resize(12);
  CHECK(model->logps({longer}, 2).size() == 1);
}

TEST_CASE(bad_inputs_are_rejected_with_clear_errors) {
  TinySpec s;
  TinyModel m = write_tiny_model(s);
  auto model = dpo::Model::load(m.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  CHECK_THROWS_CODE(model->generate({{1, 999}}, {}), dpo::ErrorCode::BadInput, "outside the vocabulary");
  CHECK_THROWS_CODE(model->generate({{}}, {}), dpo::ErrorCode::BadInput, "no tokens");
  dpo::ScoredSequence bad;
  bad.ids = {1, 2, 3};
  bad.labels = {1, 2};
  CHECK_THROWS_CODE(model->logps({bad}, 2), dpo::ErrorCode::BadInput, "labels and ids differ");
  CHECK_THROWS_CODE(dpo::Model::load(m.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cuda}), dpo::ErrorCode::NoCuda,
                    "cuda");

  // A checkpoint whose tensor has the wrong shape for its config names the tensor.
  TinySpec s2 = s;
  s2.F = 40;
  TinyModel wrong = write_tiny_model(s2);
  {
    std::ofstream cfg(wrong.dir + "/config.json");
    cfg << "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 2,"
           " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 44, \"vocab_size\": 61}";
  }
  CHECK_THROWS_CODE(dpo::Model::load(wrong.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu}),
                    dpo::ErrorCode::BadModel, "model.layers.0.mlp.gate_proj.weight");
  // A missing tensor is named too.
  TinySpec s3 = s;
  s3.L = 1;
  TinyModel shallow = write_tiny_model(s3);
  {
    std::ofstream cfg(shallow.dir + "/config.json");
    cfg << "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 2,"
           " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 8, \"intermediate_size\": 44,"
           " \"vocab_size\": 61}";
  }
  CHECK_THROWS_CODE(dpo::Model::load(shallow.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu}),
                    dpo::ErrorCode::BadModel, "model.layers.1.input_layernorm.weight");
}

TEST_CASE(stories260k_greedy_matches_known_continuation) {
  // shared/models/stories260K/README.md: from BOS alone, fp32 greedy gives these ids (BOS first).
  const std::vector<int32_t> known = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376,
                                      298, 315, 421, 395, 317, 426, 338, 401, 396, 267};
  const std::string dir = shared_dir() + "/models/stories260K";
  auto exact = dpo::Model::load(dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  dpo::GenerateOptions opt;
  opt.max_new_tokens = int(known.size()) - 1;
  opt.eos_ids = {2};
  auto out = exact->generate({{1}}, opt);
  CHECK(out.tokens[0] == std::vector<int32_t>(known.begin() + 1, known.end()));

  // NF4 stays close: the same opening words, and the fp32 continuation keeps a high log-prob under NF4.
  auto nf4 = dpo::Model::load(dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
  auto q = nf4->generate({{1}}, opt);
  size_t agree = 0;
  while (agree < q.tokens[0].size() && q.tokens[0][agree] == known[agree + 1]) agree++;
  std::printf("  nf4 greedy agrees with fp32 on the first %zu of %zu tokens\n", agree, known.size() - 1);
  CHECK(agree >= 4);
  dpo::ScoredSequence seq;
  seq.ids = known;
  seq.labels = known;
  seq.labels[0] = -100;
  double lp_exact = exact->logps({seq}, 0)[0].logp, lp_nf4 = nf4->logps({seq}, 0)[0].logp;
  std::printf("  logp of the fp32 continuation: fp32 %.4f, nf4 %.4f\n", lp_exact, lp_nf4);
  CHECK(lp_exact > -20.0);
  // 4-bit noise on a 64-wide model costs some likelihood, but well under 0.1 nat per token here.
  CHECK(lp_nf4 < lp_exact + 0.5);
  CHECK(lp_nf4 > lp_exact - 0.1 * double(known.size() - 1));
}

// Writes the tiny model the way bitsandbytes saves a *-bnb-4bit checkpoint
// (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints): per linear, uint8 packed nibbles, uint8 nested absmax,
// fp32 nested scales and maps, and the quant_state JSON; everything else (norms, embeddings, Qwen2's q/k/v biases)
// fp32. Loading it must give what quantizing the plain checkpoint at load gives.
void check_prequantized_loads_like_quantizing_at_load(const TinySpec& s) {
  TinyModel m = write_tiny_model(s);
  const std::string dir = make_temp_dir();
  std::vector<dpo::TensorToWrite> out;
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<std::vector<float>> floats;
  bytes.reserve(1000);
  floats.reserve(1000);
  const std::vector<float> nf4_table(dpo::kNf4Table, dpo::kNf4Table + 16);
  const std::vector<float> code(dpo::dynamic_map_signed(), dpo::dynamic_map_signed() + 256);
  for (auto& [name, v] : m.w) {
    const bool linear = name.find("_proj.weight") != std::string::npos;
    if (!linear) {
      int64_t n = int64_t(v.size());
      const bool vec = name.find("norm") != std::string::npos || name.find(".bias") != std::string::npos;
      std::vector<int64_t> shape = vec ? std::vector<int64_t>{n} : std::vector<int64_t>{n / s.C, s.C};
      out.push_back({name, dpo::DType::F32, shape, v.data(), v.size() * 4});
      continue;
    }
    int64_t rows = 0, cols = 0;
    linear_shape(s, name, rows, cols);
    std::vector<float> w16(v.size());
    for (size_t i = 0; i < v.size(); i++) w16[i] = dpo::round_fp16(v[i]);
    dpo::Nf4Matrix q = dpo::nf4_quantize(w16.data(), rows, cols);
    bytes.push_back(q.packed);
    out.push_back({name, dpo::DType::U8, {int64_t(q.packed.size()), 1}, bytes.back().data(), q.packed.size()});
    bytes.push_back(q.absmax_q);
    out.push_back(
        {name + ".absmax", dpo::DType::U8, {int64_t(q.absmax_q.size())}, bytes.back().data(), q.absmax_q.size()});
    floats.push_back(q.absmax2);
    out.push_back({name + ".nested_absmax",
                   dpo::DType::F32,
                   {int64_t(q.absmax2.size())},
                   floats.back().data(),
                   q.absmax2.size() * 4});
    out.push_back({name + ".quant_map", dpo::DType::F32, {16}, nf4_table.data(), 64});
    out.push_back({name + ".nested_quant_map", dpo::DType::F32, {256}, code.data(), 1024});
    char json[400];
    std::snprintf(json, sizeof json,
                  "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [%lld, %lld], "
                  "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": %.9g}",
                  (long long)rows, (long long)cols, double(q.absmax_offset));
    bytes.emplace_back(json, json + std::strlen(json));
    out.push_back({name + ".quant_state.bitsandbytes__nf4",
                   dpo::DType::U8,
                   {int64_t(bytes.back().size())},
                   bytes.back().data(),
                   bytes.back().size()});
  }
  dpo::write_safetensors(dir + "/model.safetensors", out);
  {
    std::ifstream src(m.dir + "/config.json");
    std::ofstream dst(dir + "/config.json");
    dst << src.rdbuf();
  }
  auto pre = dpo::Model::load(dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
  auto fresh = dpo::Model::load(m.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
  CHECK(pre->info().quantized_linears == 7 * s.L);
  auto a = pre->logps(sample_batch(s.V).seqs, 2), b = fresh->logps(sample_batch(s.V).seqs, 2);
  for (size_t i = 0; i < a.size(); i++) CHECK(a[i].logp == b[i].logp);
  // A broken quant_state is named.
  for (auto& t : out)
    if (t.name == "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4")
      std::memset(const_cast<void*>(t.data), 'x', t.nbytes);
  dpo::write_safetensors(dir + "/model.safetensors", out);
  CHECK_THROWS_CODE(dpo::Model::load(dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu}), dpo::ErrorCode::BadModel,
                    "model.layers.0.self_attn.q_proj.weight");
}

TEST_CASE(prequantized_bnb_4bit_checkpoint_loads_like_quantizing_at_load) {
  TinySpec llama;
  llama.C = 64;
  llama.F = 172;
  check_prequantized_loads_like_quantizing_at_load(llama);
  // Qwen2: the 4-bit q/k/v keep their biases (found by the reference suite: they used to be dropped).
  TinySpec qwen;
  qwen.arch = "Qwen2ForCausalLM";
  qwen.C = 64;
  qwen.qkv_bias = true;
  qwen.tied = true;
  check_prequantized_loads_like_quantizing_at_load(qwen);
}

TEST_MAIN()
