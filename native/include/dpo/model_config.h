// The decoder shape read from a Hugging Face config.json (Llama / Mistral / Qwen2 / Qwen3 families), with the RoPE
// scaling, sliding window and pre-quantization facts the engine must honour (docs/model-families.md).
// Dimension letters used across the engine: C = hidden, NH = query heads, NKV = key/value heads,
// HD = head dim, F = intermediate (FFN), V = vocabulary, L = layers.
#pragma once
#include <string>
#include <vector>

namespace dpo {

enum class Arch { Llama, Mistral, Qwen2, Qwen3 };

// rope_scaling / rope_parameters as transformers 5 reads them (modeling_rope_utils.py); docs/model-families.md.
enum class RopeType { Default, Linear, Dynamic, Yarn, Llama3 };
struct RopeScaling {
  RopeType type = RopeType::Default;
  double factor = 1.0;              // linear, dynamic, yarn, llama3
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
  int original_max_position = 0;    // llama3, yarn (defaults to max_position_embeddings)
  double attention_factor = 1.0;    // yarn: cos/sin are multiplied by it (resolved from mscale when not given)
  double beta_fast = 32.0, beta_slow = 1.0;  // yarn
  bool truncate = true;             // yarn: round the correction range to whole dimensions
};

const char* rope_type_name(RopeType t);

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string architecture;     // the config's "architectures"[0], e.g. "MistralForCausalLM"
  std::string model_type;       // "llama" | "mistral" | "qwen2" | "qwen3"
  int hidden = 0;               // C
  int n_layers = 0;             // L
  int n_heads = 0;              // NH
  int n_kv_heads = 0;           // NKV (defaults to NH)
  int head_dim = 0;             // HD (defaults to C / NH)
  int intermediate = 0;         // F
  int vocab = 0;                // V
  int max_position = 0;         // max_position_embeddings (0 when absent)
  // The longest sequence the engine accepts (0 = no limit from the config): max_position_embeddings, times the factor
  // for dynamic RoPE, whose scaling exists for sequences past it (docs/decisions.md "Context limits").
  int context = 0;
  float rope_theta = 10000.0f;
  RopeScaling rope;  // the frequency table's shape (model/rope_table.h)
  float rms_norm_eps = 1e-6f;
  bool tie_embeddings = false;  // lm_head shares embed_tokens
  bool qkv_bias = false;  // Qwen2 (and Llama attention_bias): q/k/v projections carry biases
  bool o_bias = false;  // Llama / Qwen3 attention_bias: o_proj carries a bias too
  bool qk_norm = false;  // Qwen3: RMSNorm over head_dim on every q and k head, before RoPE
  int sliding_window = 0;  // > 0: keys further back than this are not attended (sequences longer are refused)
  bool prequantized = false;  // quantization_config says bitsandbytes 4-bit: linears without NF4 data stay 16-bit
  int bos_token_id = -1;  // -1 when absent
  std::vector<int> eos_token_ids;
  std::string torch_dtype;  // as written ("bfloat16", "float16", "float32" or "")
};

// Parses config.json text. `source` names the file in error messages.
// Throws EngineError(BadModel) naming the missing or invalid field, or the unknown architecture (with what to do
// for the known unsupported ones: Gemma, Phi-3, multimodal wrappers naming their language model).
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);

// Reads and parses `<dir>/config.json`.
ModelConfig load_model_config(const std::string& model_dir);

}  // namespace dpo
