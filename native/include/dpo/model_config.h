// The decoder shape read from a Hugging Face config.json (Llama / Mistral / Qwen2 families).
// Dimension letters used across the engine: C = hidden, NH = query heads, NKV = key/value heads,
// HD = head dim, F = intermediate (FFN), V = vocabulary, L = layers.
#pragma once
#include <string>
#include <vector>

namespace dpo {

enum class Arch { Llama, Mistral, Qwen2 };

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string architecture;     // the config's "architectures"[0], e.g. "MistralForCausalLM"
  std::string model_type;       // "llama" | "mistral" | "qwen2"
  int hidden = 0;               // C
  int n_layers = 0;             // L
  int n_heads = 0;              // NH
  int n_kv_heads = 0;           // NKV (defaults to NH)
  int head_dim = 0;             // HD (defaults to C / NH)
  int intermediate = 0;         // F
  int vocab = 0;                // V
  int max_position = 0;         // max_position_embeddings (0 when absent)
  float rope_theta = 10000.0f;
  float rms_norm_eps = 1e-6f;
  bool tie_embeddings = false;  // lm_head shares embed_tokens
  bool qkv_bias = false;        // Qwen2 (and Llama attention_bias): q/k/v projections carry biases
  bool o_bias = false;          // Llama attention_bias: o_proj carries a bias too
  int bos_token_id = -1;        // -1 when absent
  std::vector<int> eos_token_ids;
  std::string torch_dtype;      // as written ("bfloat16", "float16", "float32" or "")
};

// Parses config.json text. `source` names the file in error messages.
// Throws EngineError(BadModel) naming the missing or invalid field, or the unknown architecture.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);

// Reads and parses `<dir>/config.json`.
ModelConfig load_model_config(const std::string& model_dir);

}  // namespace dpo
