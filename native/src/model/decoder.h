// The decoder forward pass (Llama / Mistral / Qwen2 / Qwen3): embeddings -> L x (RMSNorm, GQA attention with RoPE
// (Qwen3: per-head RMSNorm on q and k first), RMSNorm, SwiGLU MLP, residuals) -> final RMSNorm. Shared by scoring,
// prefill, KV-cached decoding and training (which keeps every block's activations and runs decoder_backward).
// Activations live in the backend's memory (float* arguments named hidden/dhidden are backend pointers); token ids,
// positions and masks are taken as host arrays and uploaded here.
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "core/device_array.h"
#include "model/device_weights.h"
#include "model/linear_kind.h"
#include "model/segment_attention.h"
#include "model/weights.h"
#include "train/lora.h"

namespace dpo {

// Per-layer keys and values of B sequences, S positions each: k, v (B, S, NKV*HD) per layer, in backend memory.
struct KvCache {
  int B = 0, S = 0, kv_dim = 0;
  std::vector<DeviceArray<float>> k, v;  // [layer] -> (B,S,KVD)

  void init(Backend& be, int layers, int batch, int capacity, int kv_dim_);
};

// One block's activations for M rows: scratch in inference, kept per layer for the backward pass in training.
struct BlockActs {
  DeviceArray<float> x_in;            // (M,C) block input (training only; the previous block writes it)
  DeviceArray<float> xn1, rstd1;      // (M,C), (M)
  DeviceArray<float> q, k, v;         // (M,QD), (M,KVD), (M,KVD): q and k after RoPE
  DeviceArray<float> q_raw, k_raw;    // (M,QD), (M,KVD): q and k projections before the per-head norm (Qwen3)
  DeviceArray<float> rstd_q, rstd_k;  // (M*NH), (M*NKV): the per-head norms' rstd (Qwen3)
  DeviceArray<float> probs;           // (B,NH,T,T) attention probabilities (training only)
  DeviceArray<float> att;             // (M,QD) attention output = o_proj input
  DeviceArray<float> x_mid;           // (M,C) residual after attention (training only)
  DeviceArray<float> xn2, rstd2;      // (M,C), (M)
  DeviceArray<float> gate, up, act;   // (M,F)
  DeviceArray<float> proj;            // (M,C) scratch for o/down outputs
  std::array<LoraSaved, kNumLinear> lora;

  void resize(Backend& be, const ModelConfig& c, int M, bool training, size_t probs_size);
};

// Full-sequence forward over a right-padded batch.
// ids, pos, key_valid: host (B,T). hidden_out: (B*T, C), after the final norm. lora may be null (adapter disabled).
// When cache is non-null (capacity S >= T), every position's keys/values are also stored at cache[b][t] (prefill).
// key_skip: host (B*T, kKeySkipInts) or null, the keys each row does not see (Backend::attention_key_skip: packed
// answer pairs, model/shared_prefix.h); only for backends with has_attention_key_skip(), and without a cache.
// only_rows: host, ascending and distinct, or null: the caller reads those rows' hidden states only, and hidden_out is
// (only_rows->size(), C); the last block then runs past its keys and values for those rows only (the same bits,
// model/last_block_rows.h). Without a cache.
void decoder_forward(float* hidden_out, const DeviceWeights& w, Backend& be, const int* ids, const int* pos,
                     const uint8_t* key_valid, int B, int T, KvCache* cache, const LoraAdapter* lora,
                     const int* key_skip = nullptr, const std::vector<int>* only_rows = nullptr);

// One decoding step for M sequences of a cache: row r is sequence seq[r], feeding token ids[r] at position pos[r]
// (host arrays). Writes its keys/values at cache[seq[r]][pos[r]] and attends to cache positions 0..pos[r].
void decoder_step(float* hidden_out, const DeviceWeights& w, Backend& be, KvCache& cache, const int* seq,
                  const int* ids, const int* pos, int M, const LoraAdapter* lora);

// The same step split for recording (Backend::begin_capture): the inputs of a step live at fixed addresses, so the
// ops of decode_step_body can be recorded once per M and replayed for every token with new inputs.
struct DecodeInputs {
  int M = 0;
  DeviceArray<float> x;   // (M,C) embedding rows (the residual stream, updated in place by the body)
  DeviceArray<int> meta;  // positions (M) | sequences (M) | cache rows seq*S+pos (M)
  BlockActs acts;         // scratch, kept so that a recording can reuse it
  RopeTable rope;         // the step's RoPE table (only dynamic scaling changes it from step to step)

  // Uploads the step's inputs (allocating when M changes: addresses stay fixed while M does).
  void set(const DeviceWeights& w, Backend& be, const KvCache& cache, const int* seq, const int* ids, const int* pos,
           int M);
};
// Every op of one decoding step, inputs taken from `in`; no upload or download.
void decode_step_body(float* hidden_out, const DeviceWeights& w, Backend& be, KvCache& cache, DecodeInputs& in,
                      const LoraAdapter* lora);

// Training: the forward with what the backward needs kept (and LoRA dropout applied when configured).
// Every block's activations are kept while they fit a budget; beyond it (7B shapes on a GPU) only each block's input
// and its dropout masks are kept, and the backward recomputes the block first (activation checkpointing, the same
// bits: every op is deterministic). DPO_RECOMPUTE=always|never overrides the choice (tests, benchmarks).
struct TrainActs {
  int B = 0, T = 0;
  bool recompute = false;
  std::vector<int> ids;              // (B*T) host copy, for the embedding gradient
  DeviceArray<int> pos;              // (B*T)
  RopeTable rope;                    // the call's RoPE table (the backward rotates back with the same one)
  DeviceArray<uint8_t> valid;        // (B*T)
  DeviceArray<int> key_skip;         // (B*T*kKeySkipInts) or empty: the keys each row does not see (decoder_forward)
  const SegmentPlan* segments = nullptr;  // a chained row's per-segment attention (B = 1), or null
  // With segments: the backward runs its row-wise ops (products, norms, SwiGLU, RoPE, LoRA) on rows
  // [0, backward_rows) only, 0 meaning all. The caller guarantees that the rows past it get no gradient: never scored,
  // and seen as keys by no row that gets one (a chained step's padding and last positions, train/dpo_group_step.cpp).
  int backward_rows = 0;
  // With segments: the rows whose final hidden states get a gradient (the scored rows; ascending, distinct, each below
  // backward_rows), or empty for all. In adapter-only training without LoRA dropout the last block's MLP, o_proj and
  // q input-gradient products then run on those rows only: the other rows' gradient there is zero, and they take
  // one through their keys and values alone (docs/performance.md#last-layer-only-where-scored; the same bits).
  // DPO_LAST_BLOCK_GRAD_ROWS=0 turns that off (tests compare).
  std::vector<int> output_grad_rows;
  std::vector<BlockActs> blocks;  // one per layer (only x_in and the LoRA masks when recomputing)
  DeviceArray<float> x_final, rstd_final;  // final-norm input (M,C) and its rstd (M)
};
// Throws E_BAD_INPUT when a sequence reaching `length` positions would need keys further back than the model's
// sliding window (the engine attends to every earlier key; within the window that is the same computation).
void check_sliding_window(const ModelConfig& c, int length, const char* what);

// Bytes of activations one block keeps for its backward at B x T.
uint64_t block_activation_bytes(const ModelConfig& c, int B, int T);
// Keeping every block's activations is fastest; past this much (all blocks) the blocks are recomputed in the backward
// instead, and training groups are split (train/dpo_group_step.cpp).
constexpr uint64_t kKeptActivationBudget = uint64_t(1) << 30;
// lora may be null (full-parameter training).
// key_skip as for decoder_forward. segments (with B = 1 and T its rows, no key_skip): a chained row of several
// micro-batches whose attention runs per segment (model/segment_attention.h); it must outlive the backward, and its
// activations are always kept (the caller sizes the chain to the budget).
void decoder_forward_train(float* hidden_out, TrainActs& acts, const DeviceWeights& w, Backend& be, const int* ids,
                           const int* pos, const uint8_t* key_valid, int B, int T, LoraAdapter* lora,
                           const int* key_skip = nullptr, const SegmentPlan* segments = nullptr);

// Backward from dhidden (B*T, C) (gradient of the final-norm output): LoRA gradients accumulate into lora's dA/dB;
// with `full` (SFT), every weight's gradient accumulates there too, embeddings included.
// Without `full`, frozen weights get no gradient.
struct FullGrads;
void decoder_backward(const float* dhidden, TrainActs& acts, const DeviceWeights& w, Backend& be, LoraAdapter* lora,
                      FullGrads* full = nullptr);

}  // namespace dpo
