// Decoder forward and backward: one transformer block at a time, with the attention step supplied by the caller
// (whole padded sequences, or single tokens against a KV cache). Residual stream and all non-4-bit math in fp32;
// LoRA runs in fp32 beside each adapted linear (spec §4-5).
#include "model/decoder.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "train/full_grads.h"

namespace dpo {

void KvCache::init(int layers, int batch, int capacity, int kv_dim_) {
  B = batch;
  S = capacity;
  kv_dim = kv_dim_;
  k.assign(size_t(layers), std::vector<float>(size_t(int64_t(B) * S * kv_dim), 0.0f));
  v.assign(size_t(layers), std::vector<float>(size_t(int64_t(B) * S * kv_dim), 0.0f));
}

void BlockActs::resize(const ModelConfig& c, int M, bool training, size_t probs_size) {
  const size_t m = size_t(M), QD = size_t(c.n_heads) * c.head_dim, KVD = size_t(c.n_kv_heads) * c.head_dim;
  if (training) {
    x_in.resize(m * c.hidden);
    x_mid.resize(m * c.hidden);
    probs.resize(probs_size);
  }
  xn1.resize(m * c.hidden);
  rstd1.resize(m);
  q.resize(m * QD);
  k.resize(m * KVD);
  v.resize(m * KVD);
  att.resize(m * QD);
  xn2.resize(m * c.hidden);
  rstd2.resize(m);
  gate.resize(m * c.intermediate);
  up.resize(m * c.intermediate);
  act.resize(m * c.intermediate);
  proj.resize(m * c.hidden);
}

namespace {

// attend(att (M,QD), probs or null, q (M,QD), k (M,KVD), v (M,KVD)): q and k already roped.
using AttendFn = std::function<void(int layer, float* att, float* probs, const float* q, const float* k,
                                    const float* v)>;

// LoRA on layer `l` (null = disabled), with dropout only while training.
struct LoraUse {
  const LoraAdapter* adapter = nullptr;
  float dropout = 0;
  std::mt19937* rng = nullptr;
  const LoraWeights* at(int layer, int kind) const { return adapter ? adapter->at(layer, kind) : nullptr; }
};

// x (M,C) is updated in place: x += o(attn(norm(x))); x += down(swiglu(norm(x))).
void block_forward(float* x, const ModelConfig& c, const LayerWeights& L, Backend& be, BlockActs& a, const int* pos,
                   int M, int layer, const LoraUse& lora, bool training, const AttendFn& attend) {
  const int C = c.hidden, F = c.intermediate;
  auto lin = [&](int kind, const Linear& base, float* y, const float* in) {
    linear_forward(be, y, in, M, base, lora.at(layer, kind), lora.dropout, lora.rng,
                   training ? &a.lora[size_t(kind)] : nullptr);
  };
  if (training) std::copy_n(x, size_t(M) * C, a.x_in.data());
  be.rmsnorm(a.xn1.data(), a.rstd1.data(), x, L.input_norm.data(), M, C, c.rms_norm_eps);
  lin(kQ, L.q, a.q.data(), a.xn1.data());
  lin(kK, L.k, a.k.data(), a.xn1.data());
  lin(kV, L.v, a.v.data(), a.xn1.data());
  be.rope(a.q.data(), pos, M, c.n_heads, c.head_dim, c.rope_theta);
  be.rope(a.k.data(), pos, M, c.n_kv_heads, c.head_dim, c.rope_theta);
  attend(layer, a.att.data(), training ? a.probs.data() : nullptr, a.q.data(), a.k.data(), a.v.data());
  lin(kO, L.o, a.proj.data(), a.att.data());
  be.add(x, x, a.proj.data(), int64_t(M) * C);

  if (training) std::copy_n(x, size_t(M) * C, a.x_mid.data());
  be.rmsnorm(a.xn2.data(), a.rstd2.data(), x, L.post_norm.data(), M, C, c.rms_norm_eps);
  lin(kGate, L.gate, a.gate.data(), a.xn2.data());
  lin(kUp, L.up, a.up.data(), a.xn2.data());
  be.swiglu(a.act.data(), a.gate.data(), a.up.data(), M, F);
  lin(kDown, L.down, a.proj.data(), a.act.data());
  be.add(x, x, a.proj.data(), int64_t(M) * C);
}

// dx (M,C): gradient of the block output on entry, of the block input on return. LoRA gradients accumulate.
void block_backward(float* dx, const ModelConfig& c, const LayerWeights& L, Backend& be, BlockActs& a, const int* pos,
                    int B, int T, int layer, LoraAdapter* lora, LayerGrads* full) {
  const int M = B * T, C = c.hidden, F = c.intermediate;
  const int QD = c.n_heads * c.head_dim, KVD = c.n_kv_heads * c.head_dim;
  const float p = lora ? lora->config.dropout : 0.0f;
  auto lin_back = [&](int kind, const Linear& base, float* din, const float* dy, const float* in) {
    linear_backward(be, din, dy, in, M, base, lora ? lora->at(layer, kind) : nullptr, p, a.lora[size_t(kind)],
                    full ? &full->lin[size_t(kind)] : nullptr);
  };
  // MLP: x_out = x_mid + down(silu(gate(xn2)) * up(xn2))
  std::vector<float> dact(size_t(M) * F, 0.0f), dgate(size_t(M) * F, 0.0f), dup(size_t(M) * F, 0.0f);
  lin_back(kDown, L.down, dact.data(), dx, a.act.data());
  be.swiglu_backward(dgate.data(), dup.data(), dact.data(), a.gate.data(), a.up.data(), M, F);
  std::vector<float> dxn(size_t(M) * C, 0.0f);
  lin_back(kGate, L.gate, dxn.data(), dgate.data(), a.xn2.data());
  lin_back(kUp, L.up, dxn.data(), dup.data(), a.xn2.data());
  be.rmsnorm_backward(dx, full ? full->post_norm.data() : nullptr, dxn.data(), a.x_mid.data(), L.post_norm.data(),
                      a.rstd2.data(), M, C);
  // Attention: x_mid = x_in + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1)))
  std::vector<float> datt(size_t(M) * QD, 0.0f), dq(size_t(M) * QD, 0.0f), dk(size_t(M) * KVD, 0.0f),
      dv(size_t(M) * KVD, 0.0f);
  lin_back(kO, L.o, datt.data(), dx, a.att.data());
  be.attention_backward(dq.data(), dk.data(), dv.data(), datt.data(), a.probs.data(), a.q.data(), a.k.data(),
                        a.v.data(), B, T, T, c.n_heads, c.n_kv_heads, c.head_dim);
  be.rope_backward(dq.data(), pos, M, c.n_heads, c.head_dim, c.rope_theta);
  be.rope_backward(dk.data(), pos, M, c.n_kv_heads, c.head_dim, c.rope_theta);
  std::fill(dxn.begin(), dxn.end(), 0.0f);
  lin_back(kQ, L.q, dxn.data(), dq.data(), a.xn1.data());
  lin_back(kK, L.k, dxn.data(), dk.data(), a.xn1.data());
  lin_back(kV, L.v, dxn.data(), dv.data(), a.xn1.data());
  be.rmsnorm_backward(dx, full ? full->input_norm.data() : nullptr, dxn.data(), a.x_in.data(), L.input_norm.data(),
                      a.rstd1.data(), M, C);
}

}  // namespace

void decoder_forward(float* hidden_out, const ModelWeights& m, Backend& be, const int* ids, const int* pos,
                     const uint8_t* key_valid, int B, int T, KvCache* cache, const LoraAdapter* lora) {
  const ModelConfig& c = m.config;
  const int KVD = c.n_kv_heads * c.head_dim, M = B * T;
  std::vector<float> x(size_t(M) * c.hidden);
  be.embedding(x.data(), ids, m.embed.data(), M, c.hidden);
  BlockActs a;
  a.resize(c, M, false, 0);
  const LoraUse use{lora, 0.0f, nullptr};
  const AttendFn attend = [&](int layer, float* att, float*, const float* q, const float* k, const float* v) {
    be.attention(att, nullptr, q, k, v, pos, key_valid, B, T, T, c.n_heads, c.n_kv_heads, c.head_dim);
    if (!cache) return;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T && t < cache->S; t++) {
        std::memcpy(cache->k_at(layer, b, t), k + (int64_t(b) * T + t) * KVD, sizeof(float) * size_t(KVD));
        std::memcpy(cache->v_at(layer, b, t), v + (int64_t(b) * T + t) * KVD, sizeof(float) * size_t(KVD));
      }
  };
  for (int l = 0; l < c.n_layers; l++) block_forward(x.data(), c, m.layers[size_t(l)], be, a, pos, M, l, use, false, attend);
  be.rmsnorm(hidden_out, nullptr, x.data(), m.final_norm.data(), M, c.hidden, c.rms_norm_eps);
}

void decoder_step(float* hidden_out, const ModelWeights& m, Backend& be, KvCache& cache, const int* seq,
                  const int* ids, const int* pos, int M, const LoraAdapter* lora) {
  const ModelConfig& c = m.config;
  const int KVD = c.n_kv_heads * c.head_dim, QD = c.n_heads * c.head_dim;
  std::vector<float> x(size_t(M) * c.hidden);
  be.embedding(x.data(), ids, m.embed.data(), M, c.hidden);
  BlockActs a;
  a.resize(c, M, false, 0);
  const LoraUse use{lora, 0.0f, nullptr};
  const AttendFn attend = [&](int layer, float* att, float*, const float* q, const float* k, const float* v) {
    for (int r = 0; r < M; r++) {
      std::memcpy(cache.k_at(layer, seq[r], pos[r]), k + int64_t(r) * KVD, sizeof(float) * size_t(KVD));
      std::memcpy(cache.v_at(layer, seq[r], pos[r]), v + int64_t(r) * KVD, sizeof(float) * size_t(KVD));
    }
    // Each row attends to its own sequence's cache, positions 0..pos[r]; S = pos[r] + 1 keeps the work exact.
    for (int r = 0; r < M; r++)
      be.attention(att + int64_t(r) * QD, nullptr, q + int64_t(r) * QD, cache.k_at(layer, seq[r], 0),
                   cache.v_at(layer, seq[r], 0), &pos[r], nullptr, 1, 1, pos[r] + 1, c.n_heads, c.n_kv_heads,
                   c.head_dim);
  };
  for (int l = 0; l < c.n_layers; l++) block_forward(x.data(), c, m.layers[size_t(l)], be, a, pos, M, l, use, false, attend);
  be.rmsnorm(hidden_out, nullptr, x.data(), m.final_norm.data(), M, c.hidden, c.rms_norm_eps);
}

void decoder_forward_train(float* hidden_out, TrainActs& acts, const ModelWeights& m, Backend& be, const int* ids,
                           const int* pos, const uint8_t* key_valid, int B, int T, LoraAdapter* lora) {
  const ModelConfig& c = m.config;
  const int M = B * T;
  acts.B = B;
  acts.T = T;
  acts.pos.assign(pos, pos + M);
  acts.valid.assign(key_valid, key_valid + M);
  acts.blocks.resize(size_t(c.n_layers));
  const size_t probs_size = size_t(B) * c.n_heads * T * T;
  std::vector<float> x(size_t(M) * c.hidden);
  be.embedding(x.data(), ids, m.embed.data(), M, c.hidden);
  const LoraUse use{lora, lora ? lora->config.dropout : 0.0f, lora ? &lora->dropout_rng : nullptr};
  const AttendFn attend = [&](int, float* att, float* probs, const float* q, const float* k, const float* v) {
    be.attention(att, probs, q, k, v, acts.pos.data(), acts.valid.data(), B, T, T, c.n_heads, c.n_kv_heads,
                 c.head_dim);
  };
  for (int l = 0; l < c.n_layers; l++) {
    BlockActs& a = acts.blocks[size_t(l)];
    a.resize(c, M, true, probs_size);
    block_forward(x.data(), c, m.layers[size_t(l)], be, a, acts.pos.data(), M, l, use, true, attend);
  }
  acts.x_final = x;
  acts.rstd_final.resize(size_t(M));
  be.rmsnorm(hidden_out, acts.rstd_final.data(), x.data(), m.final_norm.data(), M, c.hidden, c.rms_norm_eps);
}

void decoder_backward(const float* dhidden, TrainActs& acts, const ModelWeights& m, Backend& be, LoraAdapter* lora,
                      FullGrads* full, const int* ids) {
  const ModelConfig& c = m.config;
  const int M = acts.B * acts.T;
  std::vector<float> dx(size_t(M) * c.hidden, 0.0f);
  be.rmsnorm_backward(dx.data(), full ? full->final_norm.data() : nullptr, dhidden, acts.x_final.data(),
                      m.final_norm.data(), acts.rstd_final.data(), M, c.hidden);
  for (int l = c.n_layers - 1; l >= 0; l--) {
    // The gradient w.r.t. the block input = residual path (dx unchanged) + what block_backward adds.
    block_backward(dx.data(), c, m.layers[size_t(l)], be, acts.blocks[size_t(l)], acts.pos.data(), acts.B, acts.T, l,
                   lora, full ? &full->layers[size_t(l)] : nullptr);
  }
  if (full && ids) {
    // Embedding rows gather their tokens' gradients (in row order, so the sum is deterministic).
    for (int i = 0; i < M; i++) {
      float* g = full->embed.data() + int64_t(ids[i]) * c.hidden;
      const float* d = dx.data() + int64_t(i) * c.hidden;
      for (int j = 0; j < c.hidden; j++) g[j] += d[j];
    }
  }
}

}  // namespace dpo
