// ModelWeights as the compute backend sees them: mirrors of the fp32 tensors (aliases on the CPU, uploaded copies on
// a GPU) beside the host copies that loading and saving use (full-parameter training updates the mirrors in place on
// the backend and then refreshes the host copies, train/sft_step.cpp). NF4 matrices go to the backend by
// reference; it keeps its own resident copy. The token embedding stays on the host: a forward needs only its M rows,
// gathered there and uploaded, which spares a GPU the whole (V, C) table.
#pragma once
#include <array>
#include <memory>
#include <vector>

#include "core/device_array.h"
#include "model/linear_kind.h"
#include "model/weights.h"

namespace dpo {

struct DeviceLinear {
  const Linear* host = nullptr;
  Mirror w, bias;  // w null when quantized, bias null when absent

  // y (M,N) = x (M,K) . W^T + b.
  void forward(Backend& be, float* y, const float* x, int M) const;
};

struct DeviceLayer {
  Mirror input_norm, post_norm;
  Mirror q_norm, k_norm;  // (HD) Qwen3's per-head norms; null otherwise
  std::array<DeviceLinear, kNumLinear> lin;  // by LinearKind
};

struct DeviceWeights {
  const ModelWeights* host = nullptr;
  Mirror final_norm, lm_head;  // lm_head mirrors the embedding when tied
  RopeTable rope;              // the model's RoPE table (dynamic scaling: the one for calls within the context)
  // (1,C) sum of lm_head's rows: a logit row's sum is hidden . this, so TRL's logits/* metric needs no full logits.
  DeviceArray<float> lm_head_row_sum;
  // lm_head as bf16 on backends with bf16 products, when every value is a bf16 value (a bf16 checkpoint's): the same
  // logits bit for bit from half the bytes (docs/cpu-kernels.md). Empty otherwise, and after full-parameter training
  // changes lm_head; DPO_LM_HEAD_BF16=0 turns it off (benchmarks compare both).
  DeviceArray<uint16_t> lm_head_bf16;
  // What the backend keeps beside lm_head_bf16 to find greedy tokens without every logit (Backend::sketch_bf16_argmax;
  // null where it has none). Built after the layers, so the NF4 tables come first in the CPU's decode-cache budget;
  // DPO_GREEDY_SKETCH=0 turns it off (benchmarks compare both).
  std::shared_ptr<const Bf16ArgmaxSketch> lm_head_sketch;
  std::vector<DeviceLayer> layers;

  const ModelConfig& config() const { return host->config; }
  // (Re)publishes every tensor of `m` to `be`: after loading (full-parameter updates happen on the mirrors).
  void sync(Backend& be, const ModelWeights& m);
  // After every update of lm_head (full-parameter training): recomputes lm_head_row_sum from the lm_head mirror and
  // drops the bf16 copy and its sketch (the updated values are no longer bf16 values).
  void lm_head_changed(Backend& be);
  // For a model that can never update lm_head (one with NF4 layers: full-parameter training needs --quant none):
  // when lm_head is untied and the backend holds it as bf16, every logit, input gradient and greedy token goes
  // through that copy, so the fp32 one (m.lm_head and its mirror, V x C x 4 bytes) is freed. Returns the bytes freed.
  uint64_t release_fp32_lm_head(Backend& be, ModelWeights& m);
  // For the same models: an embedding whose values are all bf16 values is kept as their bf16 bits (V x C x 2 bytes
  // fewer). Tied, the fp32 lm_head mirror was the embedding, so it goes too: it serves only where the bf16 copy
  // exists. Returns the bytes freed.
  uint64_t keep_embedding_as_bf16(Backend& be, ModelWeights& m);
  // logits (n,V) = h (n,C) . lm_head^T.
  void lm_head_logits(Backend& be, float* logits, const float* h, int n) const;
  // next (n) = argmax of each row of h (n,C) . lm_head^T, first index on ties; logits (n,V) is scratch that may or
  // may not be written (the sketch path skips it).
  void greedy_tokens(Backend& be, int* next, float* logits, const float* h, int n) const;
  // dh (n,C) += dlogits (n,V) . lm_head, and dlm_head (V,C) += dlogits^T . h when dlm_head is not null.
  void lm_head_backward(Backend& be, float* dh, float* dlm_head, const float* dlogits, const float* h, int n) const;

 private:
  void update_lm_head_row_sum(Backend& be);
};

// x (M,C) = embedding rows of the host ids, gathered on the host and uploaded (ids are checked against the vocabulary).
void embed_tokens(float* x, const ModelWeights& m, Backend& be, const int* ids, int M);

}  // namespace dpo
