// The decoder forward pass (Llama / Mistral / Qwen2): embeddings -> L x (RMSNorm, GQA attention with RoPE,
// RMSNorm, SwiGLU MLP, residuals) -> final RMSNorm. Shared by scoring, prefill and KV-cached decoding.
#pragma once
#include <cstdint>
#include <vector>

#include "model/weights.h"

namespace dpo {

// Per-layer keys and values of B sequences, S positions each: k, v (B, S, NKV*HD) per layer.
struct KvCache {
  int B = 0, S = 0, kv_dim = 0;
  std::vector<std::vector<float>> k, v;  // [layer] -> (B,S,KVD)

  void init(int layers, int batch, int capacity, int kv_dim_);
  float* k_at(int layer, int b, int s) { return k[size_t(layer)].data() + (int64_t(b) * S + s) * kv_dim; }
  float* v_at(int layer, int b, int s) { return v[size_t(layer)].data() + (int64_t(b) * S + s) * kv_dim; }
};

// Full-sequence forward over a right-padded batch.
// ids, pos, key_valid: (B,T). hidden_out: (B*T, C), after the final norm.
// When cache is non-null, every position's keys/values are also stored at cache[b][t] (prefill).
void decoder_forward(float* hidden_out, const ModelWeights& m, Backend& be, const int* ids, const int* pos,
                     const uint8_t* key_valid, int B, int T, KvCache* cache);

// One decoding step for M sequences of a cache: row r is sequence seq[r], feeding token ids[r] at position pos[r].
// Writes its keys/values at cache[seq[r]][pos[r]] and attends to cache positions 0..pos[r].
// hidden_out: (M, C), after the final norm.
void decoder_step(float* hidden_out, const ModelWeights& m, Backend& be, KvCache& cache, const int* seq,
                  const int* ids, const int* pos, int M);

}  // namespace dpo
