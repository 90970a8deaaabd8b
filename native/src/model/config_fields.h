// Typed reads of config.json fields that name the file and the field in every error, with transformers' rule that
// an absent key and a null value both mean "use the default".
#pragma once
#include <cmath>
#include <limits>
#include <string>

#include "dpo/errors.h"
#include "io/json.h"

namespace dpo {

class ConfigFields {
 public:
  ConfigFields(const json::Value& root, const std::string& source) : root_(root), source_(source) {}

  const json::Value& root() const { return root_; }
  const std::string& source() const { return source_; }

  // `what` continues the sentence: " is missing field 'x'" or ": field 'x' must be ...".
  [[noreturn]]
  void bad(const std::string& what) const {
    fail(ErrorCode::BadModel, "config.json (" + source_ + ")" + what);
  }

  const json::Value* get(const char* key) const { return present(root_, key); }
  // The same rule inside a nested object (rope_scaling, quantization_config, ...).
  static const json::Value* present(const json::Value& obj, const char* key) {
    const json::Value* v = obj.find(key);
    return v && !v->is_null() ? v : nullptr;
  }

  int to_int(const json::Value& v, const std::string& key) const {
    if (!v.is_number() || v.as_number() != std::floor(v.as_number()) ||
        std::fabs(v.as_number()) > double(std::numeric_limits<int>::max()))
      bad(": field '" + key + "' must be an integer");
    return int(v.as_number());
  }

  double to_number(const json::Value& v, const std::string& key) const {
    if (!v.is_number() || !std::isfinite(v.as_number())) bad(": field '" + key + "' must be a number");
    return v.as_number();
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
    return v ? to_number(*v, key) : fallback;
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
  float positive_float(double value, const std::string& key) const {
    if (!(value > 0) || !(value <= double(std::numeric_limits<float>::max())) || !(float(value) > 0))
      bad(": field '" + key + "' must be positive and within float range");
    return float(value);
  }

  int positive(int value, const std::string& key) const {
    if (value <= 0) bad(": field '" + key + "' must be positive (got " + std::to_string(value) + ")");
    return value;
  }

 private:
  const json::Value& root_;
  const std::string& source_;
};

struct ModelConfig;
// model/rope_config.cpp: rope_theta and rope_scaling / rope_parameters into c.rope_theta and c.rope (needs
// c.max_position and c.head_dim already read).
void read_rope_config(const ConfigFields& f, ModelConfig& c);
// model/unsupported_models.cpp: throws BadModel for an architecture the engine does not run, saying why and what to
// do (Gemma, Phi-3, multimodal wrappers naming the language model inside).
[[noreturn]]
void refuse_architecture(const ConfigFields& f, const std::string& name);

}  // namespace dpo
