// The RoPE frequency tables (model/rope_table.h) against independent double computations of each scaling
// (family_model.h): the tested families' own blocks (Llama 3.1 / 3.2 llama3 smoothing), linear, dynamic NTK below and
// above the trained context, YaRN with its default, given and mscale attention factors and without truncation, and
// transformers 5's rope_parameters spelling. Also the parts of the formulas a reader can check by hand.
#include <cmath>
#include <string>

#include "check.h"
#include "dpo/errors.h"
#include "dpo/model_config.h"
#include "family_model.h"
#include "model/rope_table.h"

using namespace dpo_test;

namespace {

// A Llama-shaped config around a RoPE block (head_dim 64 unless given).
std::string config_with(const std::string& rope, int head_dim = 64, int max_pos = 4096, double theta = 500000) {
  return R"({"architectures": ["LlamaForCausalLM"], "hidden_size": )" + std::to_string(head_dim * 4) +
         R"(, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 32,
            "max_position_embeddings": )" +
         std::to_string(max_pos) + R"(, "rope_theta": )" + std::to_string(theta) + (rope.empty() ? "" : ", " + rope) +
         "}";
}

// Engine table vs the double reference for a call of length `len`: every frequency to 2e-6 relative, and the
// attention factor to fp32 rounding.
void check_table(const std::string& name, const std::string& json, int len) {
  const dpo::ModelConfig c = dpo::parse_model_config(json, name);
  const dpo::RopeTable t = dpo::rope_table(c, len);
  const TinySpec s = spec_from_config(json);
  const std::vector<double> ref = s.inv_freq(len);
  CHECK(t.inv_freq.size() == ref.size());
  double worst = 0;
  for (size_t j = 0; j < ref.size(); j++) worst = std::max(worst, std::fabs(t.inv_freq[j] - ref[j]) / ref[j]);
  std::printf("  %-28s len %6d: max relative error %.2e, attention factor %.7f\n", name.c_str(), len, worst,
              double(t.attention_scaling));
  CHECK(worst <= 2e-6);
  CHECK_CLOSE(t.attention_scaling, s.rope_attention_factor, 0, 1e-7);
}

}  // namespace

TEST_CASE(family_rope_tables_match_double) {
  for (const char* fam : {"llama-3.2-1b-instruct", "llama-3.1-8b-instruct", "qwen2.5-0.5b-instruct", "qwen3-0.6b",
                          "mistral-7b-instruct-v0.3", "breeze-7b-instruct-v1_0"}) {
    // At the twin's head_dim and at the real one: the real Llama 3.2 (HD 64) has all three llama3 bands.
    const dpo::testkit::FamilyFixture& f = dpo::testkit::family(fam);
    check_table(std::string(fam) + " (twin)", dpo::testkit::shrunk_config(f), 100);
    check_table(std::string(fam) + " (real)", f.config_json, 100);
  }
}

TEST_CASE(llama3_bands_by_hand) {
  // Llama 3.2: theta 5e5, HD 64, factor 32, original 8192, low/high 1/4: wavelength < 2048 kept, > 8192 divided by
  // 32, between blended with smooth = (8192 / wavelength - 1) / 3.
  const dpo::ModelConfig c = dpo::parse_model_config(dpo::testkit::family("llama-3.2-1b-instruct").config_json, "l32");
  const dpo::RopeTable t = dpo::rope_table(c, 1);
  const dpo::RopeTable plain = dpo::default_rope_table(64, 500000.0f);
  int kept = 0, divided = 0, blended = 0;
  for (size_t j = 0; j < t.inv_freq.size(); j++) {
    const double wavelen = 2 * M_PI / plain.inv_freq[j];
    if (wavelen < 2048) {
      kept++;
      CHECK(t.inv_freq[j] == plain.inv_freq[j]);
    } else if (wavelen > 8192) {
      divided++;
      CHECK_CLOSE(t.inv_freq[j], plain.inv_freq[j] / 32.0, 0, 1e-6);
    } else {
      blended++;
      const double smooth = (8192 / wavelen - 1) / 3;
      CHECK_CLOSE(t.inv_freq[j], (1 - smooth) * plain.inv_freq[j] / 32 + smooth * plain.inv_freq[j], 0, 2e-6);
    }
  }
  std::printf("  llama3 bands at HD 64: %d kept, %d blended, %d divided\n", kept, blended, divided);
  CHECK(kept > 0 && divided > 0 && blended > 0);
  CHECK(t.attention_scaling == 1.0f);
}

TEST_CASE(linear_dynamic_and_yarn_tables_match_double) {
  check_table("linear 4", config_with(R"("rope_scaling": {"type": "linear", "factor": 4.0})"), 10);
  // Dynamic NTK changes nothing within the trained context and grows the base past it (the call's length decides).
  const std::string dyn = config_with(R"("rope_scaling": {"rope_type": "dynamic", "factor": 2.0})", 64, 512, 10000);
  check_table("dynamic, inside the context", dyn, 512);
  check_table("dynamic, past the context", dyn, 1500);
  check_table("dynamic, far past", dyn, 70000);
  const dpo::ModelConfig dc = dpo::parse_model_config(dyn, "dyn");
  CHECK(dpo::rope_table(dc, 100) == dpo::default_rope_table(64, 10000.0f));
  CHECK(!(dpo::rope_table(dc, 600) == dpo::rope_table(dc, 700)));
  CHECK(dpo::rope_depends_on_length(dc));
  // Qwen2.5's documented long-context block, YaRN defaults (beta 32/1, mscale 0.1 ln(4) + 1).
  const std::string qwen_yarn = R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
      "num_hidden_layers": 1, "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 64,
      "vocab_size": 32, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
      "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}})";
  check_table("yarn (Qwen2.5 long context)", qwen_yarn, 10);
  CHECK_CLOSE(dpo::rope_table(dpo::parse_model_config(qwen_yarn, "q"), 1).attention_scaling, 0.1 * std::log(4.0) + 1.0,
              0, 1e-7);
  check_table("yarn, given attention factor",
              config_with(R"("rope_scaling": {"rope_type": "yarn", "factor": 8.0, "attention_factor": 0.9,
                             "original_max_position_embeddings": 2048})"),
              10);
  check_table("yarn, mscale ratio", config_with(R"("rope_scaling": {"rope_type": "yarn", "factor": 40.0, "mscale": 1.0,
                             "mscale_all_dim": 0.707, "beta_fast": 16, "original_max_position_embeddings": 4096})"),
              10);
  check_table("yarn, no truncation",
              config_with(R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0, "truncate": false,
                             "original_max_position_embeddings": 1024})"),
              10);
  // transformers 5 spelling: rope_parameters carries the type and rope_theta.
  check_table("rope_parameters (transformers 5)",
              config_with(R"("rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192})"),
              10);
}

TEST_CASE(rope_block_reading) {
  // rope_scaling wins over rope_parameters; a block's own rope_theta over the top-level one.
  const dpo::ModelConfig both =
      dpo::parse_model_config(config_with(R"("rope_scaling": {"type": "linear", "factor": 2.0},
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1234.0})"),
                              "both");
  CHECK(both.rope.type == dpo::RopeType::Linear && both.rope_theta == 500000.0f);
  const dpo::ModelConfig v5 = dpo::parse_model_config(
      config_with(R"("rope_parameters": {"rope_type": "default", "rope_theta": 1234.0})"), "v5");
  CHECK(v5.rope.type == dpo::RopeType::Default && v5.rope_theta == 1234.0f);
  // yarn's original context defaults to max_position_embeddings; a null factor is their ratio (transformers 5).
  const dpo::ModelConfig y = dpo::parse_model_config(
      config_with(R"("rope_scaling": {"rope_type": "yarn", "factor": null, "original_max_position_embeddings": 1024})"),
      "y");
  CHECK(y.rope.factor == 4.0 && y.rope.original_max_position == 1024);
  // Refusals name the field and the value.
  CHECK_THROWS_CODE(
      dpo::parse_model_config(config_with(R"("rope_scaling": {"rope_type": "longrope", "factor": 4})"), "x"),
      dpo::ErrorCode::BadModel, "rope_scaling type 'longrope' is not supported");
  CHECK_THROWS_CODE(dpo::parse_model_config(config_with(R"("rope_parameters": {"rope_type": "mrope"})"), "x"),
                    dpo::ErrorCode::BadModel, "rope_parameters type 'mrope'");
  CHECK_THROWS_CODE(
      dpo::parse_model_config(config_with(R"("rope_scaling": {"rope_type": "llama3", "factor": 8})"), "x"),
      dpo::ErrorCode::BadModel, "rope_scaling.low_freq_factor");
  CHECK_THROWS_CODE(dpo::parse_model_config(config_with(R"("rope_scaling": {"type": "linear"})"), "x"),
                    dpo::ErrorCode::BadModel, "rope_scaling.factor");
  CHECK_THROWS_CODE(dpo::parse_model_config(config_with(R"("partial_rotary_factor": 0.5)"), "x"),
                    dpo::ErrorCode::BadModel, "partial_rotary_factor 0.5");
  CHECK_THROWS_CODE(
      dpo::parse_model_config(config_with(R"("rope_scaling": {"rope_type": "dynamic", "factor": 2})", 64, 0), "x"),
      dpo::ErrorCode::BadModel, "max_position_embeddings");
}

TEST_MAIN()
