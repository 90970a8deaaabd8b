// Test helper: a naive double-precision Llama/Mistral/Qwen2/Qwen3 forward over one padded sequence, written
// independently of the engine (no shared code), used to check the engine's logits and log-probs. RoPE takes the
// spec's frequency table (family_model.h computes the scaled ones in double from the config).
#pragma once
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tiny_model.h"

namespace dpo_test {

// Weight fetcher: name -> values as the engine should see them (fp32 file values, or dequantized NF4 for nf4 runs).
using WeightFn = std::function<std::vector<double>(const std::string&)>;

// Logits (T, V) for ids (T) where positions >= valid_len are padding keys (never attended) but still computed.
inline std::vector<std::vector<double>> reference_logits(const TinySpec& s, const WeightFn& W_in,
                                                         const std::vector<int>& ids, int valid_len) {
  // Each weight fetched once per call (the lm_head of a 128k vocabulary is 65 MB in double).
  std::map<std::string, std::vector<double>> fetched;
  auto W = [&](const std::string& name) -> const std::vector<double>& {
    auto it = fetched.find(name);
    return it != fetched.end() ? it->second : fetched.emplace(name, W_in(name)).first->second;
  };
  const int T = int(ids.size()), C = s.C, HD = s.HD, QD = s.NH * HD, KVD = s.NKV * HD;
  auto linear = [&](const std::vector<double>& x, const std::string& name, int out, int in, bool bias) {
    const std::vector<double>& w = W(name + ".weight");
    std::vector<double> y(size_t(out), 0.0);
    const std::vector<double> b = bias ? W(name + ".bias") : std::vector<double>();
    for (int o = 0; o < out; o++) {
      double acc = bias ? b[size_t(o)] : 0.0;
      for (int i = 0; i < in; i++) acc += w[size_t(o) * in + i] * x[size_t(i)];
      y[size_t(o)] = acc;
    }
    return y;
  };
  auto rmsnorm = [&](const std::vector<double>& x, const std::string& name) {
    const std::vector<double>& w = W(name);
    std::vector<double> y(x.size());
    double ms = 0;
    for (double v : x) ms += v * v;
    double r = 1.0 / std::sqrt(ms / double(x.size()) + double(s.eps));
    for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * r * w[i];
    return y;
  };
  std::vector<double> inv(static_cast<size_t>(HD / 2));
  if (s.inv_freq) inv = s.inv_freq(T);  // transformers: the call's length decides dynamic scaling
  else
    for (int j = 0; j < HD / 2; j++) inv[size_t(j)] = 1.0 / std::pow(double(s.theta), 2.0 * j / HD);
  const double af = s.rope_attention_factor;
  auto rope = [&](std::vector<double>& v, int heads, int pos) {
    for (int h = 0; h < heads; h++) {
      double* x = v.data() + h * HD;
      for (int j = 0; j < HD / 2; j++) {
        const double a = pos * inv[size_t(j)], c = af * std::cos(a), sn = af * std::sin(a);
        double x1 = x[j], x2 = x[j + HD / 2];
        x[j] = x1 * c - x2 * sn;
        x[j + HD / 2] = x2 * c + x1 * sn;
      }
    }
  };
  // Qwen3: RMSNorm over each head's HD values with the layer's (HD) weight.
  auto head_norm = [&](std::vector<double>& v, int heads, const std::string& name) {
    const std::vector<double>& w = W(name);
    for (int h = 0; h < heads; h++) {
      double* x = v.data() + h * HD;
      double ms = 0;
      for (int j = 0; j < HD; j++) ms += x[j] * x[j];
      const double r = 1.0 / std::sqrt(ms / HD + double(s.eps));
      for (int j = 0; j < HD; j++) x[j] = x[j] * r * w[size_t(j)];
    }
  };
  const std::vector<double>& emb = W("model.embed_tokens.weight");
  std::vector<std::vector<double>> x(static_cast<size_t>(T), std::vector<double>(static_cast<size_t>(C)));
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++) x[size_t(t)][size_t(c)] = emb[size_t(ids[size_t(t)]) * C + c];
  const bool bias = s.qkv_bias;
  for (int l = 0; l < s.L; l++) {
    std::string p = "model.layers." + std::to_string(l);
    std::vector<std::vector<double>> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));
    for (int t = 0; t < T; t++) {
      auto xn = rmsnorm(x[size_t(t)], p + ".input_layernorm.weight");
      q[size_t(t)] = linear(xn, p + ".self_attn.q_proj", QD, C, bias);
      k[size_t(t)] = linear(xn, p + ".self_attn.k_proj", KVD, C, bias);
      v[size_t(t)] = linear(xn, p + ".self_attn.v_proj", KVD, C, bias);
      if (s.qk_norm) {
        head_norm(q[size_t(t)], s.NH, p + ".self_attn.q_norm.weight");
        head_norm(k[size_t(t)], s.NKV, p + ".self_attn.k_norm.weight");
      }
      rope(q[size_t(t)], s.NH, t);
      rope(k[size_t(t)], s.NKV, t);
    }
    for (int t = 0; t < T; t++) {
      std::vector<double> att(size_t(QD), 0.0);
      for (int h = 0; h < s.NH; h++) {
        int kh = h / (s.NH / s.NKV);
        std::vector<double> sc;
        std::vector<int> keys;
        for (int u = 0; u <= t; u++) {
          if (u >= valid_len) continue;
          double d = 0;
          for (int j = 0; j < HD; j++) d += q[size_t(t)][size_t(h * HD + j)] * k[size_t(u)][size_t(kh * HD + j)];
          sc.push_back(d / std::sqrt(double(HD)));
          keys.push_back(u);
        }
        if (keys.empty()) continue;
        double mx = sc[0];
        for (double d : sc) mx = std::max(mx, d);
        double sum = 0;
        for (double& d : sc) sum += (d = std::exp(d - mx));
        for (size_t i = 0; i < keys.size(); i++)
          for (int j = 0; j < HD; j++) att[size_t(h * HD + j)] += sc[i] / sum * v[size_t(keys[i])][size_t(kh * HD + j)];
      }
      auto o = linear(att, p + ".self_attn.o_proj", C, QD, s.o_bias);
      for (int c = 0; c < C; c++) x[size_t(t)][size_t(c)] += o[size_t(c)];
      auto xn = rmsnorm(x[size_t(t)], p + ".post_attention_layernorm.weight");
      auto g = linear(xn, p + ".mlp.gate_proj", s.F, C, false);
      auto up = linear(xn, p + ".mlp.up_proj", s.F, C, false);
      for (int f = 0; f < s.F; f++) g[size_t(f)] = g[size_t(f)] / (1.0 + std::exp(-g[size_t(f)])) * up[size_t(f)];
      auto d = linear(g, p + ".mlp.down_proj", C, s.F, false);
      for (int c = 0; c < C; c++) x[size_t(t)][size_t(c)] += d[size_t(c)];
    }
  }
  std::vector<std::vector<double>> logits(static_cast<size_t>(T));
  const std::string head = s.tied ? "model.embed_tokens" : "lm_head";
  for (int t = 0; t < T; t++)
    logits[size_t(t)] = linear(rmsnorm(x[size_t(t)], "model.norm.weight"), head, s.V, C, false);
  return logits;
}

inline double log_softmax_at(const std::vector<double>& row, int target) {
  double mx = row[0];
  for (double v : row) mx = std::max(mx, v);
  double sum = 0;
  for (double v : row) sum += std::exp(v - mx);
  return row[size_t(target)] - mx - std::log(sum);
}

}  // namespace dpo_test
