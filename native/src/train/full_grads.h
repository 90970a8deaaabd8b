// Gradients of every weight for full-parameter training (SFT): the same shapes as ModelWeights' fp32 tensors,
// plus one optimizer state per tensor, all in the backend's memory. Only models loaded without quantization can be
// trained this way.
#pragma once
#include <array>
#include <memory>
#include <vector>

#include "core/device_array.h"
#include "model/device_weights.h"
#include "model/linear_kind.h"
#include "model/weights.h"
#include "train/device_adamw.h"

namespace dpo {

// Every gradient lives in the backend's memory (accumulated by backend ops), where the optimizer step reads it.
struct LinearGrads {
  DeviceArray<float> dw;  // (N,K)
  DeviceArray<float> db;  // (N) or empty
};

struct LayerGrads {
  DeviceArray<float> input_norm, post_norm;  // (C)
  DeviceArray<float> q_norm, k_norm;         // (HD), Qwen3 only (empty otherwise)
  std::array<LinearGrads, kNumLinear> lin;
};

struct FullGrads {
  DeviceArray<float> embed, final_norm, lm_head;  // lm_head empty when tied (its gradient goes to embed)
  std::vector<LayerGrads> layers;
  std::vector<std::unique_ptr<DeviceOptimizer>> optimizers;  // one per tensor, in for_each order
  // The embedding as the optimizer updates it when it is not tied: DeviceWeights has no mirror of it (the forward
  // gathers its rows on the host), so training keeps one here. Tied, the lm_head mirror is the embedding.
  Mirror embed_param;

  // Visits every (host weight, its mirror on the backend, device gradient) triple in a fixed order.
  template <typename Fn>
  static void for_each(ModelWeights& m, DeviceWeights& d, FullGrads& g, Fn&& fn);
  void zero();
};

FullGrads make_full_grads(const ModelWeights& m, Backend& be);
const Linear& layer_linear(const LayerWeights& L, int kind);
Linear& layer_linear(LayerWeights& L, int kind);

template <typename Fn>
void FullGrads::for_each(ModelWeights& m, DeviceWeights& d, FullGrads& g, Fn&& fn) {
  fn(m.embed, m.lm_head.empty() ? d.lm_head : g.embed_param, g.embed);
  for (size_t l = 0; l < m.layers.size(); l++) {
    LayerWeights& L = m.layers[l];
    DeviceLayer& D = d.layers[l];
    LayerGrads& G = g.layers[l];
    fn(L.input_norm, D.input_norm, G.input_norm);
    fn(L.post_norm, D.post_norm, G.post_norm);
    if (!L.q_norm.empty()) fn(L.q_norm, D.q_norm, G.q_norm);
    if (!L.k_norm.empty()) fn(L.k_norm, D.k_norm, G.k_norm);
    for (int k = 0; k < kNumLinear; k++) {
      Linear& lin = layer_linear(L, k);
      DeviceLinear& dl = D.lin[size_t(k)];
      fn(lin.w, dl.w, G.lin[size_t(k)].dw);
      if (!lin.bias.empty()) fn(lin.bias, dl.bias, G.lin[size_t(k)].db);
    }
  }
  fn(m.final_norm, d.final_norm, g.final_norm);
  if (!m.lm_head.empty()) fn(m.lm_head, d.lm_head, g.lm_head);
}

}  // namespace dpo
