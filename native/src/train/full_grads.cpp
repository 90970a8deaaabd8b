// Allocation and zeroing of full-parameter gradients (SFT), and the untied embedding's mirror for the optimizer.
#include "train/full_grads.h"

#include <algorithm>

#include "dpo/errors.h"

namespace dpo {

const Linear& layer_linear(const LayerWeights& L, int kind) {
  const Linear* all[kNumLinear] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
  return *all[kind];
}
Linear& layer_linear(LayerWeights& L, int kind) {
  return const_cast<Linear&>(layer_linear(static_cast<const LayerWeights&>(L), kind));
}

FullGrads make_full_grads(const ModelWeights& m, Backend& be) {
  auto zeros = [&be](size_t n) { return n ? DeviceArray<float>::zeros(be, n) : DeviceArray<float>(); };
  FullGrads g;
  g.embed = zeros(m.embed.size());
  g.final_norm = zeros(m.final_norm.size());
  g.lm_head = zeros(m.lm_head.size());
  if (!m.lm_head.empty()) g.embed_param.sync(be, m.embed);  // untied: the optimizer's copy of the embedding
  g.layers.resize(m.layers.size());
  for (size_t l = 0; l < m.layers.size(); l++) {
    const LayerWeights& L = m.layers[l];
    LayerGrads& G = g.layers[l];
    G.input_norm = zeros(L.input_norm.size());
    G.post_norm = zeros(L.post_norm.size());
    G.q_norm = zeros(L.q_norm.size());
    G.k_norm = zeros(L.k_norm.size());
    for (int k = 0; k < kNumLinear; k++) {
      const Linear& lin = layer_linear(L, k);
      if (lin.quantized)
        fail(ErrorCode::BadInput,
             "full-parameter training needs full-precision weights: load the model with --quant none");
      G.lin[size_t(k)].dw = zeros(lin.w.size());
      G.lin[size_t(k)].db = zeros(lin.bias.size());
    }
  }
  return g;
}

void FullGrads::zero() {
  auto z = [](DeviceArray<float>& v) { v.zero(); };
  z(embed), z(final_norm), z(lm_head);
  for (LayerGrads& G : layers) {
    z(G.input_norm), z(G.post_norm), z(G.q_norm), z(G.k_norm);
    for (LinearGrads& lg : G.lin) z(lg.dw), z(lg.db);
  }
}

}  // namespace dpo
