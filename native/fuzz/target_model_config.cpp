// Fuzz target `model_config`: config.json text. Either a clean E_BAD_MODEL naming the file, or a ModelConfig the
// engine can use as it is: positive dimensions whose products the loader forms in int fit one, heads divisible
// into key/value groups, finite positive rope_theta and rms_norm_eps (as the floats the engine keeps).
#include <climits>
#include <cmath>
#include <string>

#include "dpo/model_config.h"
#include "fuzz_targets.h"

namespace dpo::fuzz {

void fuzz_model_config(const uint8_t* data, size_t size) {
  static const std::string kSource = "fuzz/config.json";
  ModelConfig c;
  try {
    c = parse_model_config(std::string(reinterpret_cast<const char*>(data), size), kSource);
  } catch (const EngineError& e) {
    expect_clean_refusal(e, ErrorCode::BadModel, kSource);
    return;
  }
  require(c.hidden > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.head_dim > 0 && c.intermediate > 0 &&
              c.vocab > 0,
          "a dimension is not positive");
  require(c.n_heads % c.n_kv_heads == 0, "num_attention_heads is not a multiple of num_key_value_heads");
  require(int64_t(c.n_heads) * c.head_dim <= INT_MAX, "num_attention_heads x head_dim overflows an int");
  require(c.max_position >= 0, "max_position_embeddings is negative");
  require(std::isfinite(c.rope_theta) && c.rope_theta > 0, "rope_theta is not a positive finite float");
  require(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0, "rms_norm_eps is not a positive finite float");
  require(!c.architecture.empty() && !c.model_type.empty(), "the architecture or model_type is empty");
}

}  // namespace dpo::fuzz
