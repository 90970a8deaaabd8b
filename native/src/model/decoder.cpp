// Decoder forward: one transformer block at a time, with the attention step supplied by the caller
// (whole padded sequences, or single tokens against a KV cache). Residual stream and all non-4-bit math in fp32.
#include "model/decoder.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace dpo {

void KvCache::init(int layers, int batch, int capacity, int kv_dim_) {
  B = batch;
  S = capacity;
  kv_dim = kv_dim_;
  k.assign(size_t(layers), std::vector<float>(size_t(int64_t(B) * S * kv_dim), 0.0f));
  v.assign(size_t(layers), std::vector<float>(size_t(int64_t(B) * S * kv_dim), 0.0f));
}

namespace {

// Scratch activations for M rows, reused across layers.
struct BlockScratch {
  std::vector<float> xn, q, k, v, att, proj, gate, up, act;
  BlockScratch(const ModelConfig& c, int M) {
    const size_t m = size_t(M), QD = size_t(c.n_heads) * c.head_dim, KVD = size_t(c.n_kv_heads) * c.head_dim;
    xn.resize(m * c.hidden);
    q.resize(m * QD);
    k.resize(m * KVD);
    v.resize(m * KVD);
    att.resize(m * QD);
    proj.resize(m * c.hidden);
    gate.resize(m * c.intermediate);
    up.resize(m * c.intermediate);
    act.resize(m * c.intermediate);
  }
};

// attend(att (M,QD), q (M,QD), k (M,KVD), v (M,KVD)): q and k already roped.
using AttendFn = std::function<void(int layer, float* att, const float* q, const float* k, const float* v)>;

// x (M,C) is updated in place: x += o(attn(norm(x))); x += down(swiglu(norm(x))).
void block_forward(float* x, const ModelConfig& c, const LayerWeights& L, Backend& be, BlockScratch& s,
                   const int* pos, int M, int layer, const AttendFn& attend) {
  const int C = c.hidden, F = c.intermediate;
  be.rmsnorm(s.xn.data(), nullptr, x, L.input_norm.data(), M, C, c.rms_norm_eps);
  L.q.forward(be, s.q.data(), s.xn.data(), M);
  L.k.forward(be, s.k.data(), s.xn.data(), M);
  L.v.forward(be, s.v.data(), s.xn.data(), M);
  be.rope(s.q.data(), pos, M, c.n_heads, c.head_dim, c.rope_theta);
  be.rope(s.k.data(), pos, M, c.n_kv_heads, c.head_dim, c.rope_theta);
  attend(layer, s.att.data(), s.q.data(), s.k.data(), s.v.data());
  L.o.forward(be, s.proj.data(), s.att.data(), M);
  be.add(x, x, s.proj.data(), int64_t(M) * C);

  be.rmsnorm(s.xn.data(), nullptr, x, L.post_norm.data(), M, C, c.rms_norm_eps);
  L.gate.forward(be, s.gate.data(), s.xn.data(), M);
  L.up.forward(be, s.up.data(), s.xn.data(), M);
  be.swiglu(s.act.data(), s.gate.data(), s.up.data(), M, F);
  L.down.forward(be, s.proj.data(), s.act.data(), M);
  be.add(x, x, s.proj.data(), int64_t(M) * C);
}

void run_blocks(float* hidden_out, const ModelWeights& m, Backend& be, const int* ids, const int* pos, int M,
                const AttendFn& attend) {
  const ModelConfig& c = m.config;
  std::vector<float> x(size_t(M) * c.hidden);
  be.embedding(x.data(), ids, m.embed.data(), M, c.hidden);
  BlockScratch s(c, M);
  for (int l = 0; l < c.n_layers; l++) block_forward(x.data(), c, m.layers[size_t(l)], be, s, pos, M, l, attend);
  be.rmsnorm(hidden_out, nullptr, x.data(), m.final_norm.data(), M, c.hidden, c.rms_norm_eps);
}

}  // namespace

void decoder_forward(float* hidden_out, const ModelWeights& m, Backend& be, const int* ids, const int* pos,
                     const uint8_t* key_valid, int B, int T, KvCache* cache) {
  const ModelConfig& c = m.config;
  const int KVD = c.n_kv_heads * c.head_dim;
  run_blocks(hidden_out, m, be, ids, pos, B * T, [&](int layer, float* att, const float* q, const float* k,
                                                      const float* v) {
    be.attention(att, nullptr, q, k, v, pos, key_valid, B, T, T, c.n_heads, c.n_kv_heads, c.head_dim);
    if (!cache) return;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T && t < cache->S; t++) {
        std::memcpy(cache->k_at(layer, b, t), k + (int64_t(b) * T + t) * KVD, sizeof(float) * size_t(KVD));
        std::memcpy(cache->v_at(layer, b, t), v + (int64_t(b) * T + t) * KVD, sizeof(float) * size_t(KVD));
      }
  });
}

void decoder_step(float* hidden_out, const ModelWeights& m, Backend& be, KvCache& cache, const int* seq,
                  const int* ids, const int* pos, int M) {
  const ModelConfig& c = m.config;
  const int KVD = c.n_kv_heads * c.head_dim, QD = c.n_heads * c.head_dim;
  run_blocks(hidden_out, m, be, ids, pos, M, [&](int layer, float* att, const float* q, const float* k,
                                                 const float* v) {
    for (int r = 0; r < M; r++) {
      std::memcpy(cache.k_at(layer, seq[r], pos[r]), k + int64_t(r) * KVD, sizeof(float) * size_t(KVD));
      std::memcpy(cache.v_at(layer, seq[r], pos[r]), v + int64_t(r) * KVD, sizeof(float) * size_t(KVD));
    }
    // Each row attends to its own sequence's cache, positions 0..pos[r]; S = pos[r] + 1 keeps the work exact.
    for (int r = 0; r < M; r++)
      be.attention(att + int64_t(r) * QD, nullptr, q + int64_t(r) * QD, cache.k_at(layer, seq[r], 0),
                   cache.v_at(layer, seq[r], 0), &pos[r], nullptr, 1, 1, pos[r] + 1, c.n_heads, c.n_kv_heads,
                   c.head_dim);
  });
}

}  // namespace dpo
