// The decoder's weights as the engine holds them: NF4 (or fp32 with --quant none) linear layers,
// fp32 embeddings / norms / lm_head (what prepare_model_for_kbit_training leaves,
// docs/reference/precision.md#preparing-for-k-bit-training).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dpo/backend.h"
#include "dpo/model_config.h"
#include "quant/nf4.h"

namespace dpo {

class WeightSet;

// y (M,N) = x (M,K) . W^T + b, W stored as NF4 or fp32.
struct Linear {
  std::string name;          // checkpoint prefix, e.g. "model.layers.0.self_attn.q_proj"
  int in = 0;                // K
  int out = 0;               // N
  bool quantized = false;
  Nf4Matrix q;               // when quantized
  std::vector<float> w;      // (N,K) when not quantized
  std::vector<float> bias;   // (N) or empty

  uint64_t resident_bytes() const;
};

struct LayerWeights {
  std::vector<float> input_norm;   // (C)
  std::vector<float> post_norm;    // (C)
  std::vector<float> q_norm, k_norm;  // (HD) Qwen3's per-head q/k RMSNorm weights; empty otherwise
  Linear q, k, v, o;               // q (NH*HD, C), k/v (NKV*HD, C), o (C, NH*HD)
  Linear gate, up, down;           // gate/up (F, C), down (C, F)
};

struct ModelWeights {
  ModelConfig config;
  std::vector<float> embed;        // (V,C); empty when held as embed_bf16
  // (V,C) bf16 bit patterns: the embedding of a model that never updates it (NF4 layers), when every value is a
  // bf16 value (DeviceWeights::keep_embedding_as_bf16); the forward widens the rows it gathers, exactly.
  std::vector<uint16_t> embed_bf16;
  std::vector<float> final_norm;   // (C)
  std::vector<float> lm_head;      // (V,C); empty when tied to embed
  std::vector<LayerWeights> layers;

  const float* lm_head_weights() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};

struct LoadStats {
  int64_t n_params = 0;
  uint64_t checkpoint_bytes = 0;
  uint64_t resident_bytes = 0;
  int quantized_linears = 0;
};

// Reads every tensor the config calls for from `ws`, checking dtype and shape, naming the tensor on any mismatch.
// Linear weights are cast to fp16 and then NF4-quantized when `quantize` (docs/reference/precision.md#loading),
// otherwise kept in fp32. progress(f) is called after each tensor. Every tensor of the checkpoint must be used (RoPE
// caches and a tied model's lm_head copy excepted), and a pre-quantized checkpoint keeps what it carries: NF4 linears
// as stored, 16-bit linears unquantized, biases, norms.
ModelWeights load_weights(const ModelConfig& config, const WeightSet& ws, bool quantize, LoadStats& stats,
                          const std::function<void(double)>& progress);

// The same checks as load_weights (names, shapes, dtypes, quant states, nothing left over) from the headers alone,
// without reading or converting tensor data: what model inspection runs, so "supported" means "will load".
LoadStats validate_weights(const ModelConfig& config, const WeightSet& ws, bool quantize);

}  // namespace dpo
