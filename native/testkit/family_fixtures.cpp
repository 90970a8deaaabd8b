// The published config.json / generation_config.json of each tested family (see family_fixtures.h), verbatim in
// content. Sources, per family, are in `sources`; "from the model card's files as commonly quoted" marks facts that
// were checked against third-party copies only (no hub access here), and say which.
#include "family_fixtures.h"

#include "dpo/errors.h"

namespace dpo::testkit {

namespace {

const char* kLlama32Config = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

const char* kLlama32Generation = R"({
  "bos_token_id": 128000,
  "do_sample": true,
  "eos_token_id": [128001, 128008, 128009],
  "temperature": 0.6,
  "top_p": 0.9,
  "transformers_version": "4.45.0.dev0"
})";

const char* kLlama31Config = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

const char* kLlama31Generation = R"({
  "bos_token_id": 128000,
  "do_sample": true,
  "eos_token_id": [128001, 128008, 128009],
  "temperature": 0.6,
  "top_p": 0.9,
  "transformers_version": "4.42.3"
})";

const char* kQwen25Config = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

const char* kQwen25Generation = R"({
  "bos_token_id": 151643,
  "pad_token_id": 151643,
  "do_sample": true,
  "eos_token_id": [151645, 151643],
  "repetition_penalty": 1.1,
  "temperature": 0.7,
  "top_p": 0.8,
  "top_k": 20,
  "transformers_version": "4.37.0"
})";

const char* kQwen3Config = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

const char* kQwen3Generation = R"({
  "bos_token_id": 151643,
  "do_sample": true,
  "eos_token_id": [151645, 151643],
  "pad_token_id": 151643,
  "temperature": 0.6,
  "top_k": 20,
  "top_p": 0.95,
  "transformers_version": "4.51.0"
})";

const char* kMistral03Config = R"({
  "architectures": ["MistralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.0.dev0",
  "use_cache": true,
  "vocab_size": 32768
})";

const char* kMistral03Generation = R"({
  "_from_model_config": true,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "transformers_version": "4.42.0.dev0"
})";

const char* kBreezeConfig = R"({
  "architectures": ["MistralForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "use_cache": true,
  "vocab_size": 61952
})";

const char* kBreezeGeneration = R"({
  "_from_model_config": true,
  "bos_token_id": 1,
  "eos_token_id": 2
})";

}  // namespace

const std::vector<FamilyFixture>& families() {
  static const std::vector<FamilyFixture> all = {
      {"llama-3.2-1b-instruct",
       "meta-llama/Llama-3.2-1B-Instruct",
       kLlama32Config,
       kLlama32Generation,
       {64, 2, 4, 2, 16, 128},
       "llama-3.1",
       "llama-3.2",
       "config.json: AutoConfig dump of meta-llama/Llama-3.2-1B-Instruct at commit 4e20de36 quoted in "
       "kevinstephano/thunder_model_blocks hf_llama/llama_config.py (eos 128001 there; the Instruct stop ids come "
       "from generation_config.json); generation_config.json eos [128001, 128008, 128009] as asserted by vLLM's "
       "tests/test_config eos test for this repository; template: Meta's 3.2 template (chat_templates.cpp)"},
      {"llama-3.1-8b-instruct",
       "meta-llama/Llama-3.1-8B-Instruct",
       kLlama31Config,
       kLlama31Generation,
       {64, 2, 4, 1, 0, 112},
       "llama-3.1",
       "llama-3.1",
       "config.json: as quoted (transformers_version 4.43.0.dev0, no head_dim) by a test fixture reproducing the "
       "Llama-3.1-8B-Instruct run folder; generation_config.json: as quoted in fastmindapi's DEVELOPMENT.md "
       "(Meta-Llama-3_1-8B-Instruct); template: Meta's 3.1 template (chat_templates.cpp)"},
      {"qwen2.5-0.5b-instruct",
       "Qwen/Qwen2.5-0.5B-Instruct",
       kQwen25Config,
       kQwen25Generation,
       {56, 2, 7, 1, 0, 96},
       "qwen2.5",
       nullptr,
       "config.json: the Qwen/Qwen2.5-0.5B-Instruct file as duplicated in DongfuJiang's chunking README (and the "
       "same fields in mlx-audio's Spark TTS test); generation_config.json: Qwen2.5 Instruct's (eos [151645, "
       "151643], as also pinned for Qwen2.5-1.5B-Instruct in redline's config test), recalled for 0.5B"},
      {"qwen3-0.6b",
       "Qwen/Qwen3-0.6B",
       kQwen3Config,
       kQwen3Generation,
       {32, 2, 4, 2, 16, 96},
       "qwen3",
       nullptr,
       "config.json: https://huggingface.co/Qwen/Qwen3-0.6B/raw/main/config.json as quoted in a Rust constants file "
       "and a model-notes page (head_dim 128 with hidden 1024 and 16 heads); generation_config.json recalled from "
       "the repository (eos [151645, 151643]), not re-checked here"},
      {"mistral-7b-instruct-v0.3",
       "mistralai/Mistral-7B-Instruct-v0.3",
       kMistral03Config,
       kMistral03Generation,
       {64, 2, 8, 2, 0, 128},
       "mistral-v0.1",
       nullptr,
       "config.json and generation_config.json recalled from the repository (vocab 32768, rope_theta 1e6, "
       "sliding_window null); no third-party copy was found here. The twin uses the Mistral v0.1 tokenizer, whose "
       "32000 ids are the first 32000 of v0.3's vocabulary, and no chat template"},
      {"breeze-7b-instruct-v1_0",
       "MediaTek-Research/Breeze-7B-Instruct-v1_0",
       kBreezeConfig,
       kBreezeGeneration,
       {64, 2, 8, 2, 0, 128},
       "mistral-v0.1",
       "breeze",
       "shape from docs/reference/model.md (vocab 61952, untied, GQA 32/8, FFN 14336, checked "
       "there against the v1_0 index size); rope_theta 10000, sliding_window 4096, max_position_embeddings 32768 "
       "and the ids are Mistral-7B-v0.1's values, which docs/reference/model.md#positions-and-padding marks unverified "
       "for Breeze; template from "
       "shared/tokenizers/breeze-7b-instruct/chat_templates.json"},
  };
  return all;
}

const FamilyFixture& family(const std::string& name) {
  std::string known;
  for (const FamilyFixture& f : families()) {
    if (name == f.name) return f;
    known += std::string(known.empty() ? "" : ", ") + f.name;
  }
  fail(ErrorCode::BadInput, "unknown model family '" + name + "' (known: " + known + ")");
}

}  // namespace dpo::testkit
