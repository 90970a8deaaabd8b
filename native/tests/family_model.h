// Test helper: tiny twins of the tested families (testkit) as TinyModels for the double reference. The spec is read
// from the written config.json here, on its own (sizes, biases, q/k norms, tied head), and the RoPE scaling tables are
// computed in double from the published formulas (Llama 3's frequency smoothing, YaRN's ramp and attention factor,
// linear interpolation, dynamic NTK), without the engine's config reader or table code.
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "io/json.h"
#include "tiny_checkpoint.h"
#include "tiny_model.h"

namespace dpo_test {

namespace family_detail {

inline const dpo::json::Value* field(const dpo::json::Value& o, const char* key) {
  const dpo::json::Value* v = o.find(key);
  return v && !v->is_null() ? v : nullptr;
}
inline double num(const dpo::json::Value& o, const char* key, double fallback) {
  const dpo::json::Value* v = field(o, key);
  return v ? v->as_number() : fallback;
}

// The RoPE block: rope_scaling (transformers 4) wins over rope_parameters (transformers 5) when non-empty.
inline const dpo::json::Value* rope_block(const dpo::json::Value& cfg) {
  for (const char* k : {"rope_scaling", "rope_parameters"}) {
    const dpo::json::Value* b = field(cfg, k);
    if (b && b->is_object() && !b->as_object().empty()) return b;
  }
  return nullptr;
}

}  // namespace family_detail

// Fills spec.inv_freq / rope_attention_factor for the config's RoPE block (double precision throughout).
inline void set_reference_rope(TinySpec& s, const dpo::json::Value& cfg) {
  using namespace family_detail;
  const dpo::json::Value* b = rope_block(cfg);
  double theta = num(cfg, "rope_theta", 10000.0);
  if (b) theta = num(*b, "rope_theta", theta);
  s.theta = float(theta);
  const int dim = s.HD;
  const double max_pos = num(cfg, "max_position_embeddings", 0);
  auto plain = [dim](double base) {
    std::vector<double> f(size_t(dim / 2));
    for (int j = 0; j < dim / 2; j++) f[size_t(j)] = std::pow(base, -2.0 * j / dim);
    return f;
  };
  const std::string type = !b                       ? "default"
                           : field(*b, "rope_type") ? field(*b, "rope_type")->as_string()
                           : field(*b, "type")      ? field(*b, "type")->as_string()
                                                    : "default";
  if (type == "default") {
    s.inv_freq = [plain, theta](int) { return plain(theta); };
    return;
  }
  const double factor = num(*b, "factor", 1.0);
  const double orig = num(*b, "original_max_position_embeddings", max_pos);
  if (type == "linear") {
    s.inv_freq = [plain, theta, factor](int) {
      auto f = plain(theta);
      for (double& x : f) x /= factor;
      return f;
    };
  } else if (type == "dynamic") {
    // NTK-aware: past the trained context L0 the base becomes theta * (factor * L / L0 - (factor - 1))^(d / (d - 2)).
    s.inv_freq = [plain, theta, factor, max_pos, dim](int len) {
      if (len <= max_pos) return plain(theta);
      return plain(theta * std::pow(factor * len / max_pos - (factor - 1), double(dim) / (dim - 2)));
    };
  } else if (type == "llama3") {
    const double lo = num(*b, "low_freq_factor", 1.0), hi = num(*b, "high_freq_factor", 4.0);
    s.inv_freq = [plain, theta, factor, orig, lo, hi](int) {
      auto f = plain(theta);
      for (double& x : f) {
        const double wavelen = 2 * M_PI / x;
        if (wavelen < orig / hi) continue;  // high frequencies: unchanged
        if (wavelen > orig / lo) {
          x /= factor;
          continue;
        }  // low frequencies: interpolated
        const double smooth = (orig / wavelen - lo) / (hi - lo);
        x = (1 - smooth) * x / factor + smooth * x;
      }
      return f;
    };
  } else if (type == "yarn") {
    const double fast = num(*b, "beta_fast", 0) ? num(*b, "beta_fast", 0) : 32;
    const double slow = num(*b, "beta_slow", 0) ? num(*b, "beta_slow", 0) : 1;
    const dpo::json::Value* tr = field(*b, "truncate");
    const bool truncate = !tr || tr->as_bool();
    // The dimension that completes `rotations` turns over the original context; a ramp between the two bounds.
    auto dim_for = [&](double rotations) {
      return dim * std::log(orig / (rotations * 2 * M_PI)) / (2 * std::log(theta));
    };
    double low = dim_for(fast), high = dim_for(slow);
    if (truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0), high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;
    s.inv_freq = [plain, theta, factor, low, high](int) {
      auto f = plain(theta);
      for (size_t j = 0; j < f.size(); j++) {
        const double ramp = std::min(1.0, std::max(0.0, (double(j) - low) / (high - low)));
        f[j] = f[j] / factor * ramp + f[j] * (1 - ramp);  // ramp 0: keep (extrapolate), 1: interpolate
      }
      return f;
    };
    auto mscale = [factor](double m) { return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; };
    const double m = num(*b, "mscale", 0), mall = num(*b, "mscale_all_dim", 0);
    s.rope_attention_factor = field(*b, "attention_factor") ? num(*b, "attention_factor", 1)
                              : (m != 0 && mall != 0)       ? mscale(m) / mscale(mall)
                                                            : mscale(1);
  }
}

// The reference's view of a config.json: sizes, biases, norms and RoPE, each read from the file's own fields.
inline TinySpec spec_from_config(const std::string& config_json) {
  using namespace family_detail;
  const dpo::json::Value cfg = dpo::json::parse(config_json);
  TinySpec s;
  s.arch = cfg.find("architectures")->as_array()[0].as_string();
  s.C = int(num(cfg, "hidden_size", 0));
  s.L = int(num(cfg, "num_hidden_layers", 0));
  s.NH = int(num(cfg, "num_attention_heads", 0));
  s.NKV = int(num(cfg, "num_key_value_heads", s.NH));
  const bool qwen3 = s.arch == "Qwen3ForCausalLM";
  s.HD = int(num(cfg, "head_dim", qwen3 ? 128 : s.C / s.NH));
  s.F = int(num(cfg, "intermediate_size", 0));
  s.V = int(num(cfg, "vocab_size", 0));
  s.tied = field(cfg, "tie_word_embeddings") && field(cfg, "tie_word_embeddings")->as_bool();
  s.eps = float(num(cfg, "rms_norm_eps", 1e-6));
  const bool attention_bias = field(cfg, "attention_bias") && field(cfg, "attention_bias")->as_bool();
  s.qkv_bias = s.arch == "Qwen2ForCausalLM" || attention_bias;
  s.o_bias = s.arch != "Qwen2ForCausalLM" && attention_bias;
  s.qk_norm = qwen3;
  set_reference_rope(s, cfg);
  return s;
}

// A family twin on disk with its values as a TinyModel (w = what the engine computes with; see TinyCheckpoint).
// Twins are written once per test process and option set, then shared (tests must not modify them).
inline const TinyModel& family_twin(const std::string& name, const dpo::testkit::TinyCheckpointOptions& o = {}) {
  static std::map<std::string, TinyModel> made;
  std::string key = name + "|" + std::to_string(o.seed) + "|" + std::to_string(o.bnb_4bit) + "|" +
                    std::to_string(o.float32) + "|" + o.config_overrides + "|" + o.tokenizers_dir;
  for (const std::string& s : o.bnb_skip) key += "|" + s;
  auto it = made.find(key);
  if (it != made.end()) return it->second;
  TinyModel m;
  m.dir = make_temp_dir();
  dpo::testkit::TinyCheckpoint c = dpo::testkit::write_family_checkpoint(dpo::testkit::family(name), m.dir, o);
  m.spec = spec_from_config(c.config_json);
  m.w = std::move(c.values);
  return made.emplace(key, std::move(m)).first->second;
}

}  // namespace dpo_test
