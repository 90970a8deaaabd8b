// Reads a Hugging Face config.json into ModelConfig, applying the defaults transformers' config classes use
// (LlamaConfig / MistralConfig / Qwen2Config / Qwen3Config) when a key is absent or null. RoPE scaling lives in
// rope_config.cpp, the refusals of known unsupported families in unsupported_models.cpp.
#include "dpo/model_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <limits>

#include "dpo/errors.h"
#include "io/json.h"
#include "io/text_file.h"
#include "model/config_fields.h"

namespace dpo {

namespace {

struct ArchInfo {
  const char* architecture;
  const char* model_type;
  Arch arch;
};
constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", "llama", Arch::Llama},
    {"MistralForCausalLM", "mistral", Arch::Mistral},
    {"Qwen2ForCausalLM", "qwen2", Arch::Qwen2},
    {"Qwen3ForCausalLM", "qwen3", Arch::Qwen3},
};

// "architectures"[0] decides the family; model_type alone is accepted when a config omits architectures.
void read_architecture(const ConfigFields& f, ModelConfig& c) {
  c.model_type = f.string("model_type");
  const json::Value* archs = f.get("architectures");
  if (archs) {
    if (!archs->is_array() || archs->as_array().empty() || !archs->as_array()[0].is_string())
      f.bad(": field 'architectures' must be a non-empty list of names");
    c.architecture = archs->as_array()[0].as_string();
  }
  for (const ArchInfo& a : kArchs) {
    bool match = archs ? c.architecture == a.architecture : c.model_type == a.model_type;
    if (!match) continue;
    c.arch = a.arch;
    if (c.architecture.empty()) c.architecture = a.architecture;
    if (c.model_type.empty()) c.model_type = a.model_type;
    return;
  }
  if (!archs && c.model_type.empty()) f.bad(" is missing field 'architectures'");
  refuse_architecture(f, archs ? c.architecture : c.model_type);
}

// The window the engine must respect (0 = every key is attended), as the transformers config classes resolve it:
// Mistral slides on every layer with sliding_window (4096 when the key is absent, none when null); Qwen2/Qwen3 only
// with use_sliding_window, on the layers from max_window_layers on (or those layer_types marks "sliding_attention").
int read_sliding_window(const ConfigFields& f, const ModelConfig& c) {
  const json::Value* raw = f.root().find("sliding_window");
  int window = 0;
  if (c.arch == Arch::Mistral) {
    if (!raw) window = 4096;
    else if (!raw->is_null()) window = f.to_int(*raw, "sliding_window");
  } else if (c.arch == Arch::Qwen2 || c.arch == Arch::Qwen3) {
    if (!f.boolean("use_sliding_window", false)) return 0;
    window = raw && !raw->is_null() ? f.to_int(*raw, "sliding_window") : raw ? 0 : 4096;
    if (window <= 0) return 0;
    bool any_sliding = false;
    if (const json::Value* types = f.get("layer_types")) {
      if (!types->is_array()) f.bad(": field 'layer_types' must be a list");
      for (const json::Value& t : types->as_array())
        any_sliding = any_sliding || (t.is_string() && t.as_string() == "sliding_attention");
    } else {
      any_sliding = f.optional_int("max_window_layers", 28) < c.n_layers;
    }
    if (!any_sliding) return 0;
  }
  if (window < 0) f.bad(": field 'sliding_window' must not be negative");
  return window;
}

// quantization_config of a bitsandbytes 4-bit checkpoint (transformers' BitsAndBytesConfig as saved); any other
// quantization method is refused, since its tensors would be read as something they are not.
bool read_prequantized(const ConfigFields& f) {
  const json::Value* q = f.get("quantization_config");
  if (!q) return false;
  if (!q->is_object()) f.bad(": field 'quantization_config' must be an object");
  const json::Value* method = ConfigFields::present(*q, "quant_method");
  const std::string m = method && method->is_string() ? method->as_string() : "bitsandbytes";
  const json::Value* four = ConfigFields::present(*q, "load_in_4bit");
  const json::Value* eight = ConfigFields::present(*q, "load_in_8bit");
  if (m != "bitsandbytes")
    f.bad(": quantization_config.quant_method '" + json::escape(m) +
          "' is not supported (only bitsandbytes NF4 checkpoints, *-bnb-4bit, or unquantized ones)");
  if (eight && eight->is_bool() && eight->as_bool())
    f.bad(": quantization_config.load_in_8bit is not supported (only bitsandbytes 4-bit NF4)");
  if (four && four->is_bool() && !four->as_bool())
    f.bad(": quantization_config.load_in_4bit is false (only bitsandbytes 4-bit NF4 is supported)");
  const json::Value* type = ConfigFields::present(*q, "bnb_4bit_quant_type");
  if (type && type->is_string() && type->as_string() != "nf4")
    f.bad(": quantization_config.bnb_4bit_quant_type '" + json::escape(type->as_string()) +
          "' is not supported (only nf4)");
  return true;
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
  json::Value root;
  try {
    root = json::parse(json_text);
  } catch (const std::runtime_error& e) {
    fail(ErrorCode::BadModel, "config.json (" + source + ") is not valid JSON: " + e.what());
  }
  if (!root.is_object()) fail(ErrorCode::BadModel, "config.json (" + source + ") is not a JSON object");
  ConfigFields f(root, source);
  ModelConfig c;
  read_architecture(f, c);

  c.hidden = f.required_dim("hidden_size");
  c.n_layers = f.required_dim("num_hidden_layers");
  c.n_heads = f.required_dim("num_attention_heads");
  c.intermediate = f.required_dim("intermediate_size");
  c.vocab = f.required_dim("vocab_size");

  // Grouped-query attention: absent num_key_value_heads means plain multi-head attention.
  c.n_kv_heads = f.positive(f.optional_int("num_key_value_heads", c.n_heads), "num_key_value_heads");
  if (c.n_heads % c.n_kv_heads != 0)
    f.bad(" has num_attention_heads " + std::to_string(c.n_heads) + " not divisible by num_key_value_heads " +
          std::to_string(c.n_kv_heads));
  if (f.get("head_dim")) {
    c.head_dim = f.positive(f.optional_int("head_dim", 0), "head_dim");
  } else if (c.arch == Arch::Qwen3) {
    c.head_dim = 128;  // Qwen3Config's default, not hidden / heads
  } else {
    if (c.hidden % c.n_heads != 0)
      f.bad(" has hidden_size " + std::to_string(c.hidden) + " not divisible by num_attention_heads " +
            std::to_string(c.n_heads) + " and no head_dim");
    c.head_dim = c.hidden / c.n_heads;
  }
  c.max_position = f.optional_int("max_position_embeddings", 0);
  if (c.max_position < 0) f.bad(": field 'max_position_embeddings' must not be negative");

  read_rope_config(f, c);
  c.context = c.rope.type == RopeType::Dynamic && c.max_position > 0
                  ? int(std::min(double(c.max_position) * c.rope.factor, double(std::numeric_limits<int>::max())))
                  : c.max_position;
  // All four transformers config classes default to 1e-6; real Mistral/Llama configs write 1e-5 explicitly.
  double eps = f.number("rms_norm_eps", 1e-6);
  c.rms_norm_eps = f.positive_float(eps, "rms_norm_eps");
  c.tie_embeddings = f.boolean("tie_word_embeddings", false);

  // The MLP is SwiGLU: silu(gate) * up. Any other activation is a different model.
  const std::string act = f.get("hidden_act") ? f.string("hidden_act") : "silu";
  if (act != "silu" && act != "swish")
    f.bad(": hidden_act '" + json::escape(act) + "' is not supported (the engine's MLP is SwiGLU with silu)");

  // Biases: Qwen2 always has q/k/v biases (o_proj none); Llama and Qwen3 put one on q/k/v/o with attention_bias;
  // Mistral has none.
  const bool attention_bias = (c.arch == Arch::Llama || c.arch == Arch::Qwen3) && f.boolean("attention_bias", false);
  c.qkv_bias = c.arch == Arch::Qwen2 || attention_bias;
  c.o_bias = attention_bias;
  if (f.boolean("mlp_bias", false)) f.bad(" sets mlp_bias, which is not supported");
  c.qk_norm = c.arch == Arch::Qwen3;
  c.sliding_window = read_sliding_window(f, c);
  c.prequantized = read_prequantized(f);

  c.bos_token_id = f.optional_int("bos_token_id", -1);
  if (const json::Value* eos = f.get("eos_token_id")) {
    if (eos->is_array()) {
      for (const json::Value& id : eos->as_array()) c.eos_token_ids.push_back(f.to_int(id, "eos_token_id"));
    } else {
      c.eos_token_ids.push_back(f.to_int(*eos, "eos_token_id"));
    }
  }
  // transformers 5 renamed torch_dtype to dtype.
  c.torch_dtype = f.get("torch_dtype") ? f.string("torch_dtype") : f.string("dtype");
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  std::string path =
      model_dir.empty() || model_dir.back() == '/' ? model_dir + "config.json" : model_dir + "/config.json";
  // A directory without config.json is not a model directory; other failures are I/O problems.
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) fail(ErrorCode::BadModel, "no config.json in " + model_dir);
  return parse_model_config(read_text_file(path), path);
}

}  // namespace dpo
