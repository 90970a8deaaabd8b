// config.json of the tested families as the engine reads them (the published files, testkit/family_fixtures.cpp),
// sliding windows as transformers resolves them, pre-quantized checkpoints, and the refusals that say what to do
// (Gemma 2/3, Phi-3, multimodal wrappers naming their language model, other activations and quantizers).
#include <string>

#include "check.h"
#include "dpo/errors.h"
#include "dpo/model_config.h"
#include "family_fixtures.h"
#include "json_write.h"

using dpo::ErrorCode;
using dpo::ModelConfig;
using dpo::parse_model_config;

namespace {

ModelConfig real(const char* fam) { return parse_model_config(dpo::testkit::family(fam).config_json, fam); }

// A family config with fields replaced (null removes a field).
std::string edited(const char* fam, const std::string& overrides) {
  dpo::json::Value cfg = dpo::json::parse(dpo::testkit::family(fam).config_json);
  const dpo::json::Value extra = dpo::json::parse(overrides);
  for (const std::string& k : extra.keys())
    cfg =
        extra.find(k)->is_null() ? dpo::testkit::json_without(cfg, k) : dpo::testkit::json_with(cfg, k, *extra.find(k));
  return dpo::testkit::json_dump(cfg);
}

}  // namespace

TEST_CASE(published_configs_read_as_transformers_reads_them) {
  const ModelConfig l32 = real("llama-3.2-1b-instruct");
  CHECK(l32.arch == dpo::Arch::Llama && l32.head_dim == 64 && l32.tie_embeddings && !l32.qkv_bias);
  CHECK(l32.rope.type == dpo::RopeType::Llama3 && l32.rope.factor == 32.0 && l32.rope.original_max_position == 8192);
  CHECK(l32.rope.low_freq_factor == 1.0 && l32.rope.high_freq_factor == 4.0 && l32.rope_theta == 500000.0f);
  CHECK(l32.eos_token_ids == std::vector<int>({128001}) && l32.sliding_window == 0);

  const ModelConfig l31 = real("llama-3.1-8b-instruct");
  CHECK(l31.head_dim == 128 && !l31.tie_embeddings && l31.rope.factor == 8.0);
  CHECK(l31.eos_token_ids == std::vector<int>({128001, 128008, 128009}));

  const ModelConfig q25 = real("qwen2.5-0.5b-instruct");
  CHECK(q25.arch == dpo::Arch::Qwen2 && q25.qkv_bias && !q25.o_bias && q25.tie_embeddings && q25.head_dim == 64);
  CHECK(q25.sliding_window == 0);  // sliding_window 32768 is written, but use_sliding_window is false
  CHECK(q25.bos_token_id == 151643 && q25.rope.type == dpo::RopeType::Default);

  const ModelConfig q3 = real("qwen3-0.6b");
  CHECK(q3.arch == dpo::Arch::Qwen3 && q3.qk_norm && !q3.qkv_bias && !q3.o_bias);
  CHECK(q3.head_dim == 128 && q3.hidden == 1024 && q3.n_heads == 16);  // head_dim is not hidden / heads
  CHECK(q3.tie_embeddings && q3.rope_theta == 1000000.0f && q3.sliding_window == 0);

  const ModelConfig m03 = real("mistral-7b-instruct-v0.3");
  CHECK(m03.arch == dpo::Arch::Mistral && m03.sliding_window == 0 && m03.vocab == 32768);
  const ModelConfig breeze = real("breeze-7b-instruct-v1_0");
  CHECK(breeze.sliding_window == 4096 && breeze.vocab == 61952 && !breeze.tie_embeddings);
}

TEST_CASE(qwen3_and_tied_combinations) {
  // Qwen3 without head_dim takes Qwen3Config's 128; attention_bias puts a bias on q, k, v and o.
  const ModelConfig q = parse_model_config(edited("qwen3-0.6b", R"({"head_dim": null, "attention_bias": true})"), "q");
  CHECK(q.head_dim == 128 && q.qkv_bias && q.o_bias);
  // Untied Qwen3 (the 8B+ sizes), tied Llama with explicit head_dim (3.2) and untied without (3.1) all read.
  CHECK(!parse_model_config(edited("qwen3-0.6b", R"({"tie_word_embeddings": false})"), "q").tie_embeddings);
  const ModelConfig l = parse_model_config(edited("llama-3.1-8b-instruct", R"({"head_dim": 96})"), "l");
  CHECK(l.head_dim == 96 && !l.tie_embeddings);
}

TEST_CASE(sliding_windows_as_transformers_resolves_them) {
  // Mistral: every layer slides; absent = 4096 (MistralConfig's default), null = none.
  CHECK(parse_model_config(edited("mistral-7b-instruct-v0.3", R"({"sliding_window": 4096})"), "m").sliding_window ==
        4096);
  std::string null_window = dpo::testkit::family("breeze-7b-instruct-v1_0").config_json;
  null_window.replace(null_window.find("\"sliding_window\": 4096"), 22, "\"sliding_window\": null");
  CHECK(parse_model_config(null_window, "m").sliding_window == 0);
  // edited() removes a field given null: absent means MistralConfig's 4096.
  CHECK(parse_model_config(edited("mistral-7b-instruct-v0.3", R"({"sliding_window": null})"), "m").sliding_window ==
        4096);
  // Qwen2/Qwen3: only with use_sliding_window, and only when some layer is at or past max_window_layers.
  CHECK(parse_model_config(edited("qwen2.5-0.5b-instruct", R"({"use_sliding_window": true})"), "q").sliding_window ==
        32768);
  CHECK(parse_model_config(edited("qwen2.5-0.5b-instruct", R"({"use_sliding_window": true, "max_window_layers": 24})"),
                           "q")
            .sliding_window == 0);
  CHECK(parse_model_config(edited("qwen3-0.6b", R"({"use_sliding_window": true, "sliding_window": 512,
                                                   "max_window_layers": 4})"),
                           "q")
            .sliding_window == 512);
  // transformers 5 writes layer_types instead.
  CHECK(parse_model_config(edited("qwen3-0.6b", R"({"use_sliding_window": true, "sliding_window": 512,
                                                   "layer_types": ["full_attention", "sliding_attention"]})"),
                           "q")
            .sliding_window == 512);
  CHECK(parse_model_config(edited("qwen3-0.6b", R"({"use_sliding_window": true, "sliding_window": 512,
                                                   "layer_types": ["full_attention", "full_attention"]})"),
                           "q")
            .sliding_window == 0);
  // Llama has no sliding window, whatever a config writes.
  CHECK(parse_model_config(edited("llama-3.2-1b-instruct", R"({"sliding_window": 16})"), "l").sliding_window == 0);
}

TEST_CASE(prequantized_and_other_quantizers) {
  const std::string bnb = R"({"quantization_config": {"load_in_4bit": true, "bnb_4bit_quant_type": "nf4",
      "bnb_4bit_use_double_quant": true, "quant_method": "bitsandbytes"}})";
  CHECK(parse_model_config(edited("qwen2.5-0.5b-instruct", bnb), "q").prequantized);
  CHECK(!real("qwen2.5-0.5b-instruct").prequantized);
  CHECK_THROWS_CODE(
      parse_model_config(
          edited("qwen2.5-0.5b-instruct", R"({"quantization_config": {"quant_method": "gptq", "bits": 4}})"), "q"),
      ErrorCode::BadModel, "quant_method 'gptq' is not supported");
  CHECK_THROWS_CODE(parse_model_config(edited("qwen2.5-0.5b-instruct", R"({"quantization_config":
                                              {"quant_method": "bitsandbytes", "load_in_8bit": true}})"),
                                       "q"),
                    ErrorCode::BadModel, "load_in_8bit");
  CHECK_THROWS_CODE(parse_model_config(edited("qwen2.5-0.5b-instruct", R"({"quantization_config":
                                              {"load_in_4bit": true, "bnb_4bit_quant_type": "fp4"}})"),
                                       "q"),
                    ErrorCode::BadModel, "bnb_4bit_quant_type 'fp4'");
  CHECK_THROWS_CODE(parse_model_config(edited("llama-3.2-1b-instruct", R"({"hidden_act": "gelu"})"), "l"),
                    ErrorCode::BadModel, "hidden_act 'gelu'");
}

TEST_CASE(refusals_say_why_and_what_to_do) {
  auto config = [](const std::string& arch, const std::string& extra = "") {
    return R"({"architectures": [")" + arch + R"("], "hidden_size": 64, "num_hidden_layers": 1,
               "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 32)" +
           extra + "}";
  };
  CHECK_THROWS_CODE(parse_model_config(config("Gemma2ForCausalLM"), "g2"), ErrorCode::BadModel,
                    "Gemma 2 is not supported: its decoder is not Llama's");
  CHECK_THROWS_CODE(parse_model_config(config("Gemma2ForCausalLM"), "g2"), ErrorCode::BadModel,
                    "choose a Llama 3.x, Qwen2.5, Qwen3");
  CHECK_THROWS_CODE(parse_model_config(config("Gemma3ForCausalLM"), "g3"), ErrorCode::BadModel, "Gemma 3");
  CHECK_THROWS_CODE(parse_model_config(config("Phi3ForCausalLM"), "p3"), ErrorCode::BadModel,
                    "Phi-3 is not supported: it packs q, k and v into one qkv_proj");
  // Breeze 2 = InternVL: the language model inside is named, with its config key.
  const std::string internvl = config("InternVLChatModel", R"(, "llm_config": {"architectures": ["LlamaForCausalLM"],
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "vision_config": {"architectures": ["InternVisionModel"]})");
  CHECK_THROWS_CODE(parse_model_config(internvl, "breeze2"), ErrorCode::BadModel,
                    "InternVLChatModel (breeze2) is a multimodal model");
  CHECK_THROWS_CODE(parse_model_config(internvl, "breeze2"), ErrorCode::BadModel,
                    "(LlamaForCausalLM, config.json 'llm_config')");
  CHECK_THROWS_CODE(parse_model_config(config("LlavaForConditionalGeneration", R"(, "text_config":
                                              {"model_type": "mistral"})"),
                                       "llava"),
                    ErrorCode::BadModel, "model_type 'mistral', config.json 'text_config'");
  // Gemma 3 multimodal: the wrapper rule comes first (it names gemma3_text inside).
  CHECK_THROWS_CODE(parse_model_config(config("Gemma3ForConditionalGeneration", R"(, "text_config":
                                              {"model_type": "gemma3_text"})"),
                                       "g3mm"),
                    ErrorCode::BadModel, "gemma3_text");
  CHECK_THROWS_CODE(parse_model_config(config("FalconForCausalLM"), "f"), ErrorCode::BadModel,
                    "unsupported architecture 'FalconForCausalLM' in f (supported: LlamaForCausalLM, "
                    "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
}

TEST_MAIN()
