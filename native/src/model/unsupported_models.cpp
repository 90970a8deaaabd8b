// Refusals that tell the user what to do: known architectures the engine does not compute say why (what differs
// from the Llama-style decoder it runs) and which families work instead; multimodal wrappers name the language
// model they carry (docs/model-families.md).
#include <string>

#include "dpo/model_config.h"
#include "model/config_fields.h"

namespace dpo {

namespace {

constexpr const char* kSupported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM";
constexpr const char* kInstead =
    "; choose a Llama 3.x, Qwen2.5, Qwen3, Mistral or Breeze-7B model (docs/model-families.md)";

struct KnownRefusal {
  const char* prefix;  // the architecture name starts with this
  const char* family;
  const char* why;
};
constexpr KnownRefusal kKnown[] = {
    {"Gemma3", "Gemma 3",
     "its decoder is not Llama's: GeGLU MLP, RMSNorm scaled by (1 + weight), embeddings multiplied by "
     "sqrt(hidden_size), extra norms after attention and MLP, q/k norms, and interleaved sliding-window layers with "
     "their own RoPE base"},
    {"Gemma2", "Gemma 2",
     "its decoder is not Llama's: GeGLU MLP, RMSNorm scaled by (1 + weight), embeddings multiplied by "
     "sqrt(hidden_size), extra norms after attention and MLP, attention and final logit soft-capping, and "
     "interleaved sliding-window layers"},
    {"Gemma", "Gemma",
     "its decoder is not Llama's: GeGLU MLP, RMSNorm scaled by (1 + weight) and embeddings multiplied by "
     "sqrt(hidden_size)"},
    {"Phi3", "Phi-3",
     "it packs q, k and v into one qkv_proj and gate and up into one gate_up_proj (LoRA targets and NF4 blocks differ "
     "from PEFT's per-projection layout), and its long-context variants use 'longrope' RoPE scaling"},
    {"Phi", "Phi",
     "its decoder uses LayerNorm with biases, a GELU MLP, parallel attention/MLP and partial rotary embeddings"},
};

// A multimodal wrapper keeps its language model's config under one of these keys.
constexpr const char* kInnerConfigKeys[] = {"llm_config", "text_config", "language_config"};

std::string inner_language_model(const json::Value& root, std::string& key) {
  for (const char* k : kInnerConfigKeys) {
    const json::Value* inner = ConfigFields::present(root, k);
    if (!inner || !inner->is_object()) continue;
    key = k;
    const json::Value* archs = ConfigFields::present(*inner, "architectures");
    if (archs && archs->is_array() && !archs->as_array().empty() && archs->as_array()[0].is_string())
      return archs->as_array()[0].as_string();
    const json::Value* type = ConfigFields::present(*inner, "model_type");
    if (type && type->is_string()) return "model_type '" + type->as_string() + "'";
    return "an unnamed language model";
  }
  return "";
}

}  // namespace

void refuse_architecture(const ConfigFields& f, const std::string& raw_name) {
  // Names come from the user's file: escaped so a control character cannot cut or forge the message.
  const std::string name = json::escape(raw_name);
  const std::string where = " (" + f.source() + ")";
  std::string key;
  const std::string inner = json::escape(inner_language_model(f.root(), key));
  if (!inner.empty()) {
    fail(ErrorCode::BadModel,
         name + where + " is a multimodal model: a vision encoder beside a language model (" + inner +
             ", config.json '" + key +
             "'). DPO Studio trains text-only decoders: use that language model's own text checkpoint (the base "
             "model it was built from), or save its weights with its " +
             key + " as a separate model folder. Supported architectures: " + kSupported);
  }
  for (const KnownRefusal& k : kKnown) {
    if (raw_name.rfind(k.prefix, 0) != 0) continue;
    fail(ErrorCode::BadModel, name + where + ": " + k.family + " is not supported: " + k.why + kInstead);
  }
  fail(ErrorCode::BadModel,
       "unsupported architecture '" + name + "' in " + f.source() + " (supported: " + kSupported + ")" + kInstead);
}

}  // namespace dpo
