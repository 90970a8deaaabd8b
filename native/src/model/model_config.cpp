// Reads a Hugging Face config.json into ModelConfig, applying the defaults transformers' config classes use
// (LlamaConfig / MistralConfig / Qwen2Config) when a key is absent or null.
#include "dpo/model_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "dpo/errors.h"
#include "io/json.h"
#include "io/text_file.h"

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
};

// Reads fields of one config, naming the file in every error.
class Fields {
 public:
  Fields(const json::Value& root, const std::string& source) : root_(root), source_(source) {}

  // `what` continues the sentence: " is missing field 'x'" or ": field 'x' must be ...".
  [[noreturn]] void bad(const std::string& what) const {
    fail(ErrorCode::BadModel, "config.json (" + source_ + ")" + what);
  }

  // Absent and null both mean "use the default", as in transformers.
  const json::Value* get(const char* key) const {
    const json::Value* v = root_.find(key);
    return v && !v->is_null() ? v : nullptr;
  }

  int to_int(const json::Value& v, const char* key) const {
    if (!v.is_number() || v.as_number() != std::floor(v.as_number()) ||
        std::fabs(v.as_number()) > double(std::numeric_limits<int>::max()))
      bad(std::string(": field '") + key + "' must be an integer");
    return int(v.as_number());
  }

  int required_dim(const char* key) const {
    const json::Value* v = get(key);
    if (!v) bad(std::string(" is missing field '") + key + "'");
    return positive(to_int(*v, key), key);
  }

  int optional_int(const char* key, int fallback) const {
    const json::Value* v = get(key);
    return v ? to_int(*v, key) : fallback;
  }

  double number(const char* key, double fallback) const {
    const json::Value* v = get(key);
    if (!v) return fallback;
    if (!v->is_number()) bad(std::string(": field '") + key + "' must be a number");
    return v->as_number();
  }

  bool boolean(const char* key, bool fallback) const {
    const json::Value* v = get(key);
    if (!v) return fallback;
    if (!v->is_bool()) bad(std::string(": field '") + key + "' must be true or false");
    return v->as_bool();
  }

  std::string string(const char* key) const {
    const json::Value* v = get(key);
    if (!v) return "";
    if (!v->is_string()) bad(std::string(": field '") + key + "' must be a string");
    return v->as_string();
  }

  // The engine keeps these as float: a double such as 1e205 would become inf there, and 1e-300 would become 0.
  float positive_float(double value, const char* key) const {
    if (!(value > 0) || !(value <= double(std::numeric_limits<float>::max())) || !(float(value) > 0))
      bad(std::string(": field '") + key + "' must be positive and within float range");
    return float(value);
  }

  int positive(int value, const char* key) const {
    if (value <= 0) bad(std::string(": field '") + key + "' must be positive (got " + std::to_string(value) + ")");
    return value;
  }

 private:
  const json::Value& root_;
  const std::string& source_;
};

// "architectures"[0] decides the family; model_type alone is accepted when a config omits architectures.
void read_architecture(const Fields& f, const std::string& source, ModelConfig& c) {
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
  fail(ErrorCode::BadModel, "unsupported architecture '" + json::escape(archs ? c.architecture : c.model_type) + "' in " + source +
                                " (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
}

// Plain RoPE only. Older configs write rope_scaling {type|rope_type}; transformers 5 writes rope_parameters
// {rope_type, rope_theta}. "default" is unscaled RoPE and fine; anything else (linear, dynamic, yarn, llama3)
// changes the frequencies and is refused rather than silently computed wrong.
void read_rope(const Fields& f, ModelConfig& c) {
  double theta = f.number("rope_theta", 10000.0);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const json::Value* rope = f.get(key);
    if (!rope) continue;
    if (!rope->is_object()) f.bad(std::string(": field '") + key + "' must be an object");
    const json::Value* type = rope->find("rope_type");
    if (!type || type->is_null()) type = rope->find("type");
    if (type && !type->is_null()) {
      std::string t = type->is_string() ? type->as_string() : "?";
      if (t != "default") f.bad(": rope_scaling '" + json::escape(t) + "' is not supported");
    }
    const json::Value* rt = rope->find("rope_theta");
    if (rt && rt->is_number() && !f.get("rope_theta")) theta = rt->as_number();
  }
  c.rope_theta = f.positive_float(theta, "rope_theta");
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
  Fields f(root, source);
  ModelConfig c;
  read_architecture(f, source, c);

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
  } else {
    if (c.hidden % c.n_heads != 0)
      f.bad(" has hidden_size " + std::to_string(c.hidden) + " not divisible by num_attention_heads " +
            std::to_string(c.n_heads) + " and no head_dim");
    c.head_dim = c.hidden / c.n_heads;
  }
  c.max_position = f.optional_int("max_position_embeddings", 0);
  if (c.max_position < 0) f.bad(": field 'max_position_embeddings' must not be negative");

  read_rope(f, c);
  // All three transformers config classes default to 1e-6; real Mistral/Llama-2 configs write 1e-5 explicitly.
  double eps = f.number("rms_norm_eps", 1e-6);
  c.rms_norm_eps = f.positive_float(eps, "rms_norm_eps");
  c.tie_embeddings = f.boolean("tie_word_embeddings", false);

  // Qwen2 always has q/k/v biases; Llama has them when attention_bias is set (Mistral never).
  c.qkv_bias = c.arch == Arch::Qwen2 || (c.arch == Arch::Llama && f.boolean("attention_bias", false));
  // Llama's attention_bias also puts a bias on o_proj; Qwen2's o_proj has none.
  c.o_bias = c.arch == Arch::Llama && c.qkv_bias;
  if (f.boolean("mlp_bias", false)) f.bad(" sets mlp_bias, which is not supported");

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
  std::string path = model_dir.empty() || model_dir.back() == '/' ? model_dir + "config.json" : model_dir + "/config.json";
  // A directory without config.json is not a model directory; other failures are I/O problems.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) fail(ErrorCode::BadModel, "no config.json in " + model_dir);
  return parse_model_config(read_text_file(path), path);
}

}  // namespace dpo
