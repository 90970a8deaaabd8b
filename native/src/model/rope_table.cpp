// RoPE frequency tables (see rope_table.h). Each formula follows transformers 5's modeling_rope_utils.py in fp32,
// one rounding per torch operation: Python scalars are rounded to fp32 where torch mixes them with an fp32 tensor,
// `scalar / tensor` is torch's reciprocal-then-multiply, and products are kept out of FMAs (fp_strict.h).
#include "model/rope_table.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/fp_strict.h"
#include "dpo/errors.h"

namespace dpo {

void check_rope_table(const RopeTable& t, int HD) {
  if (HD <= 0 || HD % 2 != 0) fail(ErrorCode::BadInput, "rope: head_dim must be even (got " + std::to_string(HD) + ")");
  if (t.inv_freq.size() != size_t(HD / 2))
    fail(ErrorCode::BadInput, "rope: the frequency table has " + std::to_string(t.inv_freq.size()) +
                                  " entries, head_dim " + std::to_string(HD) + " needs " + std::to_string(HD / 2));
}

namespace {

constexpr double kPi = 3.14159265358979323846;

// 1 / theta^(2j/dim): torch's `1.0 / (base ** (arange(0, dim, 2).float() / dim))` (fp32 exponent, pow, reciprocal).
std::vector<float> plain_inv_freq(int dim, float theta) {
  std::vector<float> f(size_t(dim / 2));
  for (int j = 0; j < dim / 2; j++) f[size_t(j)] = rn(1.0f / rn(std::pow(theta, rn(float(2 * j) / float(dim)))));
  return f;
}

// Dynamic NTK: past max_position_embeddings the base grows to
// theta * (factor * L / max - (factor - 1)) ^ (dim / (dim - 2)), L = the call's length (an fp32 tensor expression).
std::vector<float> dynamic_inv_freq(const ModelConfig& c, int dim, int seq_len) {
  const RopeScaling& r = c.rope;
  if (seq_len <= c.max_position) return plain_inv_freq(dim, c.rope_theta);
  const float ratio = rn(rn(rn(float(r.factor) * float(seq_len)) / float(c.max_position)) - float(r.factor - 1.0));
  const float grown = rn(std::pow(ratio, float(double(dim) / double(dim - 2))));
  return plain_inv_freq(dim, mul_rn(c.rope_theta, grown));
}

// YaRN: frequencies below the correction range are interpolated (/ factor), those above kept, a linear ramp between.
std::vector<float> yarn_inv_freq(const ModelConfig& c, int dim) {
  const RopeScaling& r = c.rope;
  const double base = double(c.rope_theta), orig = double(r.original_max_position);
  // Which dimension completes `rotations` turns over the pretrained context (Python float arithmetic).
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(orig / (rotations * 2 * kPi))) / (2 * std::log(base));
  };
  double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
  if (r.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // transformers: "prevent singularity"
  std::vector<float> f(size_t(dim / 2));
  for (int j = 0; j < dim / 2; j++) {
    const float pos_freq = rn(std::pow(c.rope_theta, rn(float(2 * j) / float(dim))));
    const float extrapolated = rn(1.0f / pos_freq);
    const float interpolated = rn(1.0f / mul_rn(float(r.factor), pos_freq));
    const float ramp = std::min(1.0f, std::max(0.0f, rn(rn(float(j) - float(low)) / float(high - low))));
    const float keep = rn(1.0f - ramp);  // inv_freq_extrapolation_factor
    f[size_t(j)] = rn(mul_rn(interpolated, rn(1.0f - keep)) + mul_rn(extrapolated, keep));
  }
  return f;
}

// Llama 3: wavelengths longer than original/low_freq_factor are divided by factor, shorter than
// original/high_freq_factor kept, and the band between blended smoothly.
std::vector<float> llama3_inv_freq(const ModelConfig& c, int dim) {
  const RopeScaling& r = c.rope;
  std::vector<float> f = plain_inv_freq(dim, c.rope_theta);
  const double orig = double(r.original_max_position);
  const float low_wavelen = float(orig / r.low_freq_factor), high_wavelen = float(orig / r.high_freq_factor);
  const float factor = float(r.factor);
  for (float& inv : f) {
    const float wavelen = mul_rn(rn(1.0f / inv), float(2 * kPi));
    const float scaled = wavelen > low_wavelen ? rn(inv / factor) : inv;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    if (!medium) {
      inv = scaled;
      continue;
    }
    const float smooth = rn(rn(mul_rn(rn(1.0f / wavelen), float(orig)) - float(r.low_freq_factor)) /
                            float(r.high_freq_factor - r.low_freq_factor));
    inv = rn(rn(mul_rn(rn(1.0f - smooth), scaled) / factor) + mul_rn(smooth, scaled));
  }
  return f;
}

}  // namespace

RopeTable default_rope_table(int HD, float theta) {
  RopeTable t;
  t.inv_freq = plain_inv_freq(HD, theta);
  return t;
}

RopeTable rope_table(const ModelConfig& c, int seq_len) {
  const int dim = c.head_dim;
  RopeTable t;
  switch (c.rope.type) {
    case RopeType::Default: t.inv_freq = plain_inv_freq(dim, c.rope_theta); break;
    case RopeType::Linear:
      t.inv_freq = plain_inv_freq(dim, c.rope_theta);
      for (float& f : t.inv_freq) f = rn(f / float(c.rope.factor));
      break;
    case RopeType::Dynamic: t.inv_freq = dynamic_inv_freq(c, dim, seq_len); break;
    case RopeType::Yarn:
      t.inv_freq = yarn_inv_freq(c, dim);
      t.attention_scaling = float(c.rope.attention_factor);
      break;
    case RopeType::Llama3: t.inv_freq = llama3_inv_freq(c, dim); break;
  }
  return t;
}

}  // namespace dpo
