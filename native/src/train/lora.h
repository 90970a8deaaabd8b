// LoRA adapters as PEFT builds them (docs/reference/lora.md): per adapted linear, A (r, in) kaiming-uniform, B (out, r)
// zero, fp32, output scaled by alpha / r, optional dropout on the LoRA input. Holds the gradients and optimizer state
// too.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/device_array.h"
#include "dpo/backend.h"
#include "model/device_weights.h"
#include "model/linear_kind.h"
#include "model/weights.h"
#include "train/device_adamw.h"

namespace dpo {

struct LoraWeights {
  int r = 0, in = 0, out = 0;
  float scale = 1.0f;  // alpha / r
  // (r,in), (out,r): the host copies adapters are saved from and loaded into. The optimizer updates A_dev / B_dev in
  // place on the backend, which leaves these stale where the mirrors are copies (host_stale); pull_host() refreshes
  // them on demand (Model::optimizer_step says why lazily).
  std::vector<float> A, B;
  Mirror A_dev, B_dev;  // A and B as the backend sees them: sync() after every host change
  DeviceArray<float> dA, dB;  // gradients, same shapes, accumulated by backend ops
  std::unique_ptr<DeviceOptimizer> optA, optB;  // state in backend memory; updates A_dev / B_dev
  bool host_stale = false;  // A_dev / B_dev changed on the backend since A / B were current

  // Host -> backend: after A or B changed on the host.
  void sync(Backend& be) {
    A_dev.sync(be, A), B_dev.sync(be, B);
    host_stale = false;
  }
  // Backend -> host: makes A and B current after optimizer steps (no copy where the mirrors alias them).
  void pull_host() {
    if (!host_stale) return;
    A_dev.pull(A), B_dev.pull(B);
    host_stale = false;
  }
};

struct LoraConfig {
  std::vector<std::string> targets;  // linear kind names
  int r = 64;
  float alpha = 16.0f;
  float dropout = 0.0f;
  uint64_t seed = 42;
};

struct LoraAdapter {
  LoraConfig config;
  // [layer][kind] -> weights, null where the kind is not a target.
  std::vector<std::array<std::unique_ptr<LoraWeights>, kNumLinear>> layers;
  std::mt19937 dropout_rng;
  // dropout_rng as of the last optimizer step (or creation): what a checkpoint saves, so the draws of a step that
  // was cancelled half-way are drawn again on resume (train/optimizer_state.cpp).
  std::mt19937 dropout_rng_at_step;
  bool optimizer_8bit = false;  // which kind the optimizer states were made for

  const LoraWeights* at(int layer, int kind) const { return layers[size_t(layer)][size_t(kind)].get(); }
  LoraWeights* at(int layer, int kind) { return layers[size_t(layer)][size_t(kind)].get(); }
  // PEFT state-dict name, e.g. base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
  static std::string tensor_name(int layer, int kind, bool is_a);
};

// Builds the adapter for `m`. A is drawn like torch.manual_seed(seed) followed by PEFT's get_peft_model on the CPU:
// per adapted module in named_modules order, nn.Linear's default init of A, then of B, then kaiming_uniform_(A,
// a=sqrt(5)) again; each uniform_ draw is (mt19937() & 0xFFFFFF) * 2^-24 scaled to [-1/sqrt(fan_in), 1/sqrt(fan_in)).
// Gradients start at zero on `be`, where A and B are published too.
std::unique_ptr<LoraAdapter> make_lora(const ModelWeights& m, const LoraConfig& config, Backend& be);

// What the LoRA path keeps from the forward for its backward (backend memory).
struct LoraSaved {
  DeviceArray<float> u;  // (M,r) = drop(x) . A^T
  DeviceArray<float> xd;  // (M,K) drop(x), only when dropout > 0
  DeviceArray<uint8_t> kept;  // (M,K) dropout mask (made on the host, uploaded), only when dropout > 0
};

// y (M,N) = base(x) + scale * (drop(x) . A^T) . B^T. Dropout (dropout > 0) draws a new mask when rng is non-null,
// re-applies saved->kept when rng is null and that mask exists, and is off otherwise.
// `saved` (may be null) receives what linear_backward needs.
void linear_forward(Backend& be, float* y, const float* x, int M, const DeviceLinear& base, const LoraWeights* lora,
                    float dropout, std::mt19937* rng, LoraSaved* saved);

// linear_forward of several layers that read the same x (q, k and v; gate and up), in the order given, so dropout
// masks are drawn in that order: when every base is NF4 they go in one Backend::matmul_nf4_many, which forms bf16(x)
// once; then each layer's LoRA term. The same results as one linear_forward per layer.
struct LinearCall {
  float* y;
  const DeviceLinear* base;
  const LoraWeights* lora;
  LoraSaved* saved;
};
void linear_forward_many(Backend& be, const float* x, int M, const LinearCall* calls, int count, float dropout,
                         std::mt19937* rng);

// dx (M,K) += dy . W + the LoRA path's input gradient; lora->dA, dB accumulate. x is the layer input. dx may be null
// (nothing below wants the input gradient: the first block of adapter-only training); the weight gradients still form.
// Base weights are frozen: no base-weight gradient is formed (docs/reference/linear4bit.md#backward).
// full (may be null): base weight and bias gradients accumulate there too (full-parameter training).
// dx_fresh: dx's contents are undefined (fresh scratch) and it gets what a zero-filled dx would: the base product
// overwrites it (Backend::matmul_nf4_backward_input_overwrite) instead of a zero fill and an add.
struct LinearGrads;
void linear_backward(Backend& be, float* dx, const float* dy, const float* x, int M, const DeviceLinear& base,
                     LoraWeights* lora, float dropout, const LoraSaved& saved, LinearGrads* full = nullptr,
                     bool dx_fresh = false);

}  // namespace dpo
