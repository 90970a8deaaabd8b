// Publishing the weights to the backend, the base linear layer on it, and the host-side embedding gather.
#include "model/device_weights.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/half.h"

#include "dpo/errors.h"
#include "model/rope_table.h"
#include "train/full_grads.h"

namespace dpo {
namespace {

// Every value is a bf16 value (its low 16 bits are zero), so its bf16 bits, f32_bits(v) >> 16, hold it exactly.
bool all_bf16_values(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return (f32_bits(x) & 0xffffu) == 0; });
}

uint16_t exact_bf16_bits(float v) { return uint16_t(f32_bits(v) >> 16); }

}  // namespace

void DeviceLinear::forward(Backend& be, float* y, const float* x, int M) const {
  if (host->quantized) be.matmul_nf4(y, x, host->q, bias.get(), M);
  else be.matmul(y, x, w.get(), bias.get(), M, host->in, host->out);
}

void DeviceWeights::sync(Backend& be, const ModelWeights& m) {
  host = &m;
  rope = rope_table(m.config, 1);
  final_norm.sync(be, m.final_norm);
  const std::vector<float>& head = m.lm_head.empty() ? m.embed : m.lm_head;
  lm_head.sync(be, head);
  update_lm_head_row_sum(be);
  lm_head_bf16 = {};
  const char* env = std::getenv("DPO_LM_HEAD_BF16");
  const bool wanted = !(env && std::string(env) == "0");
  if (wanted && be.has_bf16_matmul() && all_bf16_values(head)) {
    // Converted through a small buffer: a whole host copy would be V x C x 2 bytes of fresh pages, written and
    // copied once (docs/performance.md#loading-a-checkpoint).
    lm_head_bf16 = DeviceArray<uint16_t>(be, head.size());
    std::vector<uint16_t> slice(std::min(head.size(), size_t(1) << 16));
    for (size_t i0 = 0; i0 < head.size(); i0 += slice.size()) {
      const size_t n = std::min(slice.size(), head.size() - i0);
      for (size_t i = 0; i < n; i++) slice[i] = exact_bf16_bits(head[i0 + i]);
      be.upload(lm_head_bf16.get() + i0, slice.data(), n * sizeof(uint16_t));
    }
  }
  layers.resize(m.layers.size());
  for (size_t l = 0; l < m.layers.size(); l++) {
    const LayerWeights& L = m.layers[l];
    DeviceLayer& D = layers[l];
    D.input_norm.sync(be, L.input_norm);
    D.post_norm.sync(be, L.post_norm);
    D.q_norm.sync(be, L.q_norm);
    D.k_norm.sync(be, L.k_norm);
    for (int k = 0; k < kNumLinear; k++) {
      const Linear& lin = layer_linear(L, k);
      DeviceLinear& d = D.lin[size_t(k)];
      d.host = &lin;
      d.w.sync(be, lin.w);
      d.bias.sync(be, lin.bias);
      if (lin.quantized) be.prepare_nf4(lin.q);
    }
  }
  lm_head_sketch = nullptr;
  const char* sketch_env = std::getenv("DPO_GREEDY_SKETCH");
  if (lm_head_bf16.get() && !(sketch_env && std::string(sketch_env) == "0"))
    lm_head_sketch = be.sketch_bf16_argmax(lm_head_bf16.get(), m.config.hidden, m.config.vocab);
}

void DeviceWeights::lm_head_changed(Backend& be) {
  lm_head_sketch = nullptr;
  lm_head_bf16 = {};
  update_lm_head_row_sum(be);
}

uint64_t DeviceWeights::release_fp32_lm_head(Backend& be, ModelWeights& m) {
  if (m.config.tie_embeddings || m.lm_head.empty() || !lm_head_bf16.get()) return 0;
  const uint64_t bytes = m.lm_head.size() * sizeof(float);
  lm_head.sync(be, {});           // the mirror: null
  std::vector<float>().swap(m.lm_head);  // the host copy, memory included
  return bytes;
}

uint64_t DeviceWeights::keep_embedding_as_bf16(Backend& be, ModelWeights& m) {
  if (m.embed.empty()) return 0;
  if (m.config.tie_embeddings && !lm_head_bf16.get()) return 0;  // the fp32 mirror computes the logits
  if (!all_bf16_values(m.embed)) return 0;
  m.embed_bf16.resize(m.embed.size());
  for (size_t i = 0; i < m.embed.size(); i++) m.embed_bf16[i] = exact_bf16_bits(m.embed[i]);
  if (m.config.tie_embeddings) lm_head.sync(be, {});
  const uint64_t freed = m.embed.size() * (sizeof(float) - sizeof(uint16_t));
  std::vector<float>().swap(m.embed);
  return freed;
}

void DeviceWeights::lm_head_logits(Backend& be, float* logits, const float* h, int n) const {
  const int C = config().hidden, V = config().vocab;
  if (lm_head_bf16.get()) be.matmul_bf16(logits, h, lm_head_bf16.get(), n, C, V);
  else be.matmul(logits, h, lm_head.get(), nullptr, n, C, V);
}

void DeviceWeights::greedy_tokens(Backend& be, int* next, float* logits, const float* h, int n) const {
  const int C = config().hidden, V = config().vocab;
  if (lm_head_sketch && be.matmul_bf16_argmax(next, h, lm_head_bf16.get(), *lm_head_sketch, n, C, V)) return;
  lm_head_logits(be, logits, h, n);
  be.argmax_rows(next, logits, n, V);
}

void DeviceWeights::lm_head_backward(Backend& be, float* dh, float* dlm_head, const float* dlogits, const float* h,
                                     int n) const {
  const int C = config().hidden, V = config().vocab;
  if (lm_head_bf16.get() && !dlm_head) be.matmul_bf16_backward_input(dh, dlogits, lm_head_bf16.get(), n, C, V);
  else be.matmul_backward(dh, dlm_head, nullptr, dlogits, h, lm_head.get(), n, C, V);
}

void DeviceWeights::update_lm_head_row_sum(Backend& be) {
  // ones (1,V) . lm_head (V,C), as a matmul backward's input gradient.
  const int V = config().vocab, C = config().hidden;
  DeviceArray<float> ones = DeviceArray<float>::from_host(be, std::vector<float>(size_t(V), 1.0f));
  lm_head_row_sum = DeviceArray<float>::zeros(be, size_t(C));
  be.matmul_backward(lm_head_row_sum.get(), nullptr, nullptr, ones.get(), nullptr, lm_head.get(), 1, C, V);
}

void embed_tokens(float* x, const ModelWeights& m, Backend& be, const int* ids, int M) {
  const int C = m.config.hidden, V = m.config.vocab;
  std::vector<float> rows(size_t(M) * C);
  for (int i = 0; i < M; i++) {
    if (ids[i] < 0 || ids[i] >= V)
      fail(ErrorCode::BadInput,
           "token id " + std::to_string(ids[i]) + " is outside the vocabulary (" + std::to_string(V) + ")");
    float* row = rows.data() + int64_t(i) * C;
    if (m.embed.empty()) {
      const uint16_t* bits = m.embed_bf16.data() + int64_t(ids[i]) * C;
      for (int c = 0; c < C; c++) row[c] = bf16_to_f32(bits[c]);  // exact: a bf16 value widened
    } else {
      std::memcpy(row, m.embed.data() + int64_t(ids[i]) * C, sizeof(float) * size_t(C));
    }
  }
  be.upload(x, rows.data(), rows.size() * sizeof(float));
}

}  // namespace dpo
