// rope_theta and RoPE scaling from config.json, read the way transformers 5 standardizes them
// (modeling_rope_utils.py, RotaryEmbeddingConfigMixin): transformers 4 writes `rope_scaling` {type|rope_type, ...}
// beside a top-level rope_theta; transformers 5 writes `rope_parameters` {rope_type, rope_theta, ...}. A non-empty
// rope_scaling wins over rope_parameters, a block's own rope_theta over the top-level one. Every type the engine
// computes (default, linear, dynamic, yarn, llama3) has its required keys checked; any other type, and partial
// rotary embeddings, are refused naming the field and the value (docs/model-families.md).
#include <cmath>
#include <sstream>
#include <string>

#include "dpo/model_config.h"
#include "model/config_fields.h"

namespace dpo {

const char* rope_type_name(RopeType t) {
  switch (t) {
    case RopeType::Default: return "default";
    case RopeType::Linear: return "linear";
    case RopeType::Dynamic: return "dynamic";
    case RopeType::Yarn: return "yarn";
    case RopeType::Llama3: return "llama3";
  }
  return "?";
}

namespace {

// The block that describes RoPE, and the name it was found under (for messages).
const json::Value* rope_block(const ConfigFields& f, std::string& key) {
  for (const char* k : {"rope_scaling", "rope_parameters"}) {
    const json::Value* v = f.get(k);
    if (!v) continue;
    if (!v->is_object()) f.bad(std::string(": field '") + k + "' must be an object");
    if (v->as_object().empty()) continue;  // transformers treats {} like null
    key = k;
    return v;
  }
  return nullptr;
}

// yarn's default attention factor (transformers' get_mscale): 1 for factor <= 1, else 0.1 * mscale * ln(factor) + 1.
double yarn_mscale(double factor, double mscale) { return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0; }

}  // namespace

void read_rope_config(const ConfigFields& f, ModelConfig& c) {
  std::string key;
  const json::Value* block = rope_block(f, key);
  double theta = f.number("rope_theta", 10000.0);
  if (block && ConfigFields::present(*block, "rope_theta"))
    theta = f.to_number(*ConfigFields::present(*block, "rope_theta"), key + ".rope_theta");
  c.rope_theta = f.positive_float(theta, "rope_theta");

  // Partial rotary embeddings (a fraction of each head rotated) are a different kernel: refused wherever written.
  for (const json::Value* holder : {&f.root(), block}) {
    if (!holder) continue;
    const json::Value* p = ConfigFields::present(*holder, "partial_rotary_factor");
    if (p && !(p->is_number() && p->as_number() == 1.0)) {
      std::ostringstream value;
      if (p->is_number()) value << p->as_number();
      else value << "?";
      f.bad(": partial_rotary_factor " + value.str() + " is not supported (every head dimension must be rotated)");
    }
  }
  if (c.head_dim % 2 != 0) f.bad(": RoPE needs an even head_dim (got " + std::to_string(c.head_dim) + ")");
  if (!block) return;

  const json::Value* type_v = ConfigFields::present(*block, "rope_type");
  if (!type_v) type_v = ConfigFields::present(*block, "type");
  const std::string type = !type_v ? "default" : type_v->is_string() ? type_v->as_string() : "?";
  RopeScaling& r = c.rope;
  if (type == "default") return;
  if (type == "linear") r.type = RopeType::Linear;
  else if (type == "dynamic") r.type = RopeType::Dynamic;
  else if (type == "yarn") r.type = RopeType::Yarn;
  else if (type == "llama3") r.type = RopeType::Llama3;
  else
    f.bad(": " + key + " type '" + json::escape(type) +
          "' is not supported (supported: default, linear, dynamic, yarn, llama3; e.g. Phi-3's 'longrope' and "
          "multimodal 'mrope' are not)");

  auto required = [&](const char* name) -> const json::Value& {
    const json::Value* v = block->find(name);
    if (!v) f.bad(" is missing field '" + key + "." + name + "' (needed by RoPE type '" + json::escape(type) + "')");
    return *v;
  };
  auto number_at = [&](const char* name, double fallback) {
    const json::Value* v = ConfigFields::present(*block, name);
    return v ? f.to_number(*v, key + "." + name) : fallback;
  };
  // transformers 5 fills original_max_position_embeddings from max_position_embeddings for llama3 and yarn.
  auto original_max = [&]() {
    const json::Value* v = ConfigFields::present(*block, "original_max_position_embeddings");
    const int n = v ? f.to_int(*v, key + ".original_max_position_embeddings") : c.max_position;
    if (n <= 0)
      f.bad(": RoPE type '" + type + "' needs " + key +
            ".original_max_position_embeddings or max_position_embeddings (a positive integer)");
    return n;
  };

  const json::Value& factor_v = required("factor");
  if (r.type == RopeType::Yarn && factor_v.is_null()) {
    // transformers 5: a null factor is the ratio of the extended to the pretrained context.
    r.original_max_position = original_max();
    if (c.max_position <= 0) f.bad(": yarn with a null factor needs max_position_embeddings");
    r.factor = double(c.max_position) / r.original_max_position;
  } else {
    r.factor = f.to_number(factor_v, key + ".factor");
  }
  if (!(r.factor > 0)) f.bad(": field '" + key + ".factor' must be positive");

  switch (r.type) {
    case RopeType::Linear: break;
    case RopeType::Dynamic:
      if (c.max_position <= 0) f.bad(": RoPE type 'dynamic' needs max_position_embeddings");
      break;
    case RopeType::Llama3:
      r.low_freq_factor = f.to_number(required("low_freq_factor"), key + ".low_freq_factor");
      r.high_freq_factor = f.to_number(required("high_freq_factor"), key + ".high_freq_factor");
      if (!(r.high_freq_factor > r.low_freq_factor) || !(r.low_freq_factor > 0))
        f.bad(": " + key + " needs 0 < low_freq_factor < high_freq_factor");
      r.original_max_position = original_max();
      break;
    case RopeType::Yarn: {
      if (r.original_max_position == 0) r.original_max_position = original_max();
      // beta_fast / beta_slow: transformers uses `value or default`, so 0 also means the default.
      r.beta_fast = number_at("beta_fast", 0.0);
      r.beta_slow = number_at("beta_slow", 0.0);
      if (r.beta_fast == 0) r.beta_fast = 32.0;
      if (r.beta_slow == 0) r.beta_slow = 1.0;
      const json::Value* truncate = ConfigFields::present(*block, "truncate");
      if (truncate && !truncate->is_bool()) f.bad(": field '" + key + ".truncate' must be true or false");
      r.truncate = truncate ? truncate->as_bool() : true;
      const json::Value* af = ConfigFields::present(*block, "attention_factor");
      const double mscale = number_at("mscale", 0.0), mscale_all_dim = number_at("mscale_all_dim", 0.0);
      if (af) r.attention_factor = f.to_number(*af, key + ".attention_factor");
      else if (mscale != 0 && mscale_all_dim != 0)
        r.attention_factor = yarn_mscale(r.factor, mscale) / yarn_mscale(r.factor, mscale_all_dim);
      else r.attention_factor = yarn_mscale(r.factor, 1.0);
      break;
    }
    case RopeType::Default: break;
  }
}

}  // namespace dpo
