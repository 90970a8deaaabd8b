// Test helper: writes a tiny random Llama/Qwen2-style model directory (config.json + model.safetensors) and
// holds its fp32 weights for the double-precision reference forward in reference_forward.h.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "io/safetensors.h"
#include "quant/nf4.h"
#include "temp_dir.h"

namespace dpo_test {

struct TinySpec {
  std::string arch = "LlamaForCausalLM";
  int C = 32, L = 2, NH = 4, NKV = 2, HD = 8, F = 44, V = 61;
  bool tied = false;
  bool qkv_bias = false;  // Qwen2
  bool bf16_values = false;  // every value rounded to bf16 (what a bf16 checkpoint holds), still written as F32
  float theta = 10000.0f, eps = 1e-5f;
  unsigned seed = 7;
  int max_position = 0;  // max_position_embeddings in config.json (0 = not written)
  // Family features (family_model.h fills them from a real config): o_proj bias, Qwen3's per-head q/k norms, and a
  // scaled RoPE: inv_freq(seq_len) (HD/2 values; unset = 1/theta^(2j/HD)) with cos/sin multiplied by the factor.
  bool o_bias = false;
  bool qk_norm = false;
  std::function<std::vector<double>(int seq_len)> inv_freq;
  double rope_attention_factor = 1.0;
};

struct TinyModel {
  TinySpec spec;
  std::string dir;
  std::map<std::string, std::vector<float>> w;  // tensor name -> fp32 values (what the file holds)

  const std::vector<float>& at(const std::string& name) const { return w.at(name); }
};

inline TinyModel write_tiny_model(const TinySpec& s) {
  TinyModel m;
  m.spec = s;
  m.dir = make_temp_dir();
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = offset + scale * nd(rng);
    if (s.bf16_values)
      for (float& x : v) x = dpo::round_bf16(x);
    m.w[name] = v;
    return shape;
  };
  std::map<std::string, std::vector<int64_t>> shapes;
  const int QD = s.NH * s.HD, KVD = s.NKV * s.HD;
  shapes["model.embed_tokens.weight"] = add("model.embed_tokens.weight", {s.V, s.C}, 1.0f);
  for (int l = 0; l < s.L; l++) {
    std::string p = "model.layers." + std::to_string(l);
    shapes[p + ".input_layernorm.weight"] = add(p + ".input_layernorm.weight", {s.C}, 0.1f, 1.0f);
    shapes[p + ".post_attention_layernorm.weight"] = add(p + ".post_attention_layernorm.weight", {s.C}, 0.1f, 1.0f);
    const float ws = 1.0f / std::sqrt(float(s.C));
    shapes[p + ".self_attn.q_proj.weight"] = add(p + ".self_attn.q_proj.weight", {QD, s.C}, ws * 2.0f);
    shapes[p + ".self_attn.k_proj.weight"] = add(p + ".self_attn.k_proj.weight", {KVD, s.C}, ws * 2.0f);
    shapes[p + ".self_attn.v_proj.weight"] = add(p + ".self_attn.v_proj.weight", {KVD, s.C}, ws);
    shapes[p + ".self_attn.o_proj.weight"] = add(p + ".self_attn.o_proj.weight", {s.C, QD}, ws);
    if (s.qkv_bias) {
      shapes[p + ".self_attn.q_proj.bias"] = add(p + ".self_attn.q_proj.bias", {QD}, 0.1f);
      shapes[p + ".self_attn.k_proj.bias"] = add(p + ".self_attn.k_proj.bias", {KVD}, 0.1f);
      shapes[p + ".self_attn.v_proj.bias"] = add(p + ".self_attn.v_proj.bias", {KVD}, 0.1f);
    }
    shapes[p + ".mlp.gate_proj.weight"] = add(p + ".mlp.gate_proj.weight", {s.F, s.C}, ws);
    shapes[p + ".mlp.up_proj.weight"] = add(p + ".mlp.up_proj.weight", {s.F, s.C}, ws);
    shapes[p + ".mlp.down_proj.weight"] = add(p + ".mlp.down_proj.weight", {s.C, s.F}, 1.0f / std::sqrt(float(s.F)));
  }
  shapes["model.norm.weight"] = add("model.norm.weight", {s.C}, 0.1f, 1.0f);
  if (!s.tied) shapes["lm_head.weight"] = add("lm_head.weight", {s.V, s.C}, 1.0f / std::sqrt(float(s.C)));

  std::vector<dpo::TensorToWrite> tensors;
  for (auto& [name, v] : m.w)
    tensors.push_back({name, dpo::DType::F32, shapes[name], v.data(), v.size() * sizeof(float)});
  dpo::write_safetensors(m.dir + "/model.safetensors", tensors, {{"format", "pt"}});

  const bool qwen = s.arch == "Qwen2ForCausalLM";
  std::ofstream cfg(m.dir + "/config.json");
  cfg << "{\"architectures\": [\"" << s.arch << "\"], \"model_type\": \"" << (qwen ? "qwen2" : "llama") << "\","
      << " \"hidden_size\": " << s.C << ", \"num_hidden_layers\": " << s.L << ", \"num_attention_heads\": " << s.NH
      << ", \"num_key_value_heads\": " << s.NKV << ", \"head_dim\": " << s.HD << ", \"intermediate_size\": " << s.F
      << ", \"vocab_size\": " << s.V << ", \"rms_norm_eps\": " << s.eps << ", \"rope_theta\": " << s.theta
      << ", \"tie_word_embeddings\": " << (s.tied ? "true" : "false")
      << (s.max_position > 0 ? ", \"max_position_embeddings\": " + std::to_string(s.max_position) : std::string())
      << ", \"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"float32\"}";
  return m;
}

// (rows, cols) of the linear weight `name` ("..._proj.weight") of a model of spec s.
inline void linear_shape(const TinySpec& s, const std::string& name, int64_t& rows, int64_t& cols) {
  if (name.find("q_proj") != std::string::npos) rows = s.NH * s.HD, cols = s.C;
  else if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos)
    rows = s.NKV * s.HD, cols = s.C;
  else if (name.find("o_proj") != std::string::npos) rows = s.C, cols = s.NH * s.HD;
  else if (name.find("down_proj") != std::string::npos) rows = s.C, cols = s.F;
  else rows = s.F, cols = s.C;
}

// The values the engine computes with for linear weight `name` under --quant nf4 (docs/reference/linear4bit.md,
// docs/reference/precision.md#loading): fp16-cast, NF4-quantized, dequantized, rounded to bf16.
inline std::vector<double> nf4_engine_weights(const TinySpec& s, const std::string& name, const std::vector<float>& v) {
  int64_t rows = 0, cols = 0;
  linear_shape(s, name, rows, cols);
  std::vector<float> w16(v.size());
  for (size_t i = 0; i < v.size(); i++) w16[i] = dpo::round_fp16(v[i]);
  const dpo::Nf4Matrix q = dpo::nf4_quantize(w16.data(), rows, cols);
  std::vector<float> deq(v.size());
  dpo::nf4_dequantize(q, deq.data());
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = dpo::round_bf16(deq[i]);
  return out;
}

}  // namespace dpo_test
