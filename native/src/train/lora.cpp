// LoRA: creation with torch's CPU generator semantics (docs/reference/lora.md#initialisation-and-its-random-numbers),
// and the adapted linear's forward and backward.
#include "train/lora.h"

#include <algorithm>
#include <cmath>

#include "dpo/errors.h"
#include "train/full_grads.h"

namespace dpo {

std::string LoraAdapter::tensor_name(int layer, int kind, bool is_a) {
  return "base_model.model.model.layers." + std::to_string(layer) + "." + linear_kind_parent(kind) + "." +
         linear_kind_name(kind) + (is_a ? ".lora_A.weight" : ".lora_B.weight");
}

namespace {

// torch's CPU uniform_(-bound, bound) for fp32: 24 random bits per value from the mt19937 stream
// (docs/reference/lora.md#initialisation-and-its-random-numbers).
void torch_uniform(std::mt19937& gen, float* out, size_t n, float bound) {
  const float lo = -bound, span = 2.0f * bound;
  for (size_t i = 0; i < n; i++) {
    const float u = float(gen() & 0xFFFFFFu) * (1.0f / 16777216.0f);
    out[i] = u * span + lo;
  }
}

}  // namespace

std::unique_ptr<LoraAdapter> make_lora(const ModelWeights& m, const LoraConfig& config, Backend& be) {
  if (config.r < 1) fail(ErrorCode::BadInput, "LoRA rank r must be at least 1");
  if (!(config.alpha > 0)) fail(ErrorCode::BadInput, "LoRA alpha must be positive");
  if (config.dropout < 0 || config.dropout >= 1) fail(ErrorCode::BadInput, "LoRA dropout must be in [0, 1)");
  bool target[kNumLinear] = {};
  if (config.targets.empty()) fail(ErrorCode::BadInput, "LoRA needs at least one target module");
  for (const std::string& t : config.targets) {
    int k = linear_kind_from_name(t);
    if (k < 0)
      fail(ErrorCode::BadInput,
           "unknown LoRA target '" + t + "' (use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    target[k] = true;
  }
  auto a = std::make_unique<LoraAdapter>();
  a->config = config;
  a->layers.resize(m.layers.size());
  a->dropout_rng.seed(uint32_t(config.seed ^ 0x9e3779b9u));
  a->dropout_rng_at_step = a->dropout_rng;
  std::mt19937 gen(uint32_t(config.seed));
  std::vector<float> discard;
  for (size_t l = 0; l < m.layers.size(); l++) {
    for (int k = 0; k < kNumLinear; k++) {
      if (!target[k]) continue;
      const Linear& base = layer_linear(m.layers[l], k);
      auto w = std::make_unique<LoraWeights>();
      w->r = config.r;
      w->in = base.in;
      w->out = base.out;
      w->scale = config.alpha / float(config.r);
      w->A.resize(size_t(w->r) * w->in);
      w->B.assign(size_t(w->out) * w->r, 0.0f);
      w->dA = DeviceArray<float>::zeros(be, w->A.size());
      w->dB = DeviceArray<float>::zeros(be, w->B.size());
      // nn.Linear(in, r) default init, nn.Linear(r, out) default init (both kaiming_uniform_(a=sqrt(5)), bound
      // 1/sqrt(fan_in)), then PEFT's reset_lora_parameters draws A again and zeroes B.
      torch_uniform(gen, w->A.data(), w->A.size(), 1.0f / std::sqrt(float(w->in)));
      discard.resize(w->B.size());
      torch_uniform(gen, discard.data(), discard.size(), 1.0f / std::sqrt(float(w->r)));
      torch_uniform(gen, w->A.data(), w->A.size(), 1.0f / std::sqrt(float(w->in)));
      w->sync(be);
      a->layers[l][size_t(k)] = std::move(w);
    }
  }
  return a;
}

namespace {

// y += scale * (drop(x) . A^T) . B^T: linear_forward's LoRA term.
void add_lora_term(Backend& be, float* y, const float* x, int M, const LoraWeights* lora, float dropout,
                   std::mt19937* rng, LoraSaved* saved) {
  if (!lora) return;
  const int r = lora->r, K = lora->in, N = lora->out;
  const size_t MK = size_t(M) * K;
  LoraSaved local;
  LoraSaved& sv = saved ? *saved : local;
  // Inverted dropout on the LoRA input only (PEFT: lora_B(lora_A(dropout(x)))); the mask is drawn on the host from
  // the adapter's generator, so every backend drops the same elements. Without a generator but with a mask already
  // in `saved`, that mask is applied again: the recomputation of a block in the backward pass (decoder.cpp).
  const float* xin = x;
  const bool replay = !rng && saved && !saved->kept.empty();
  if (dropout > 0 && (rng || replay)) {
    if (rng) {
      std::vector<uint8_t> kept(MK);
      std::uniform_real_distribution<float> uni(0.0f, 1.0f);
      for (size_t i = 0; i < MK; i++) kept[i] = uni(*rng) >= dropout;
      sv.kept.ensure(be, MK);
      sv.kept.upload(kept);
    }
    sv.xd.ensure(be, MK);
    be.dropout(sv.xd.get(), x, sv.kept.get(), 1.0f / (1.0f - dropout), int64_t(MK));
    xin = sv.xd.get();
  } else {
    sv.xd = DeviceArray<float>();
    sv.kept = DeviceArray<uint8_t>();
  }
  sv.u.ensure(be, size_t(M) * r);
  be.matmul(sv.u.get(), xin, lora->A_dev.get(), nullptr, M, K, r);
  DeviceArray<float> delta(be, size_t(M) * N);
  be.matmul(delta.get(), sv.u.get(), lora->B_dev.get(), nullptr, M, r, N);
  // result + lora_out * scale, in fp32 as PEFT does with autocast off (docs/reference/lora.md#forward).
  be.axpy(y, delta.get(), lora->scale, int64_t(M) * N);
}

}  // namespace

void linear_forward(Backend& be, float* y, const float* x, int M, const DeviceLinear& base, const LoraWeights* lora,
                    float dropout, std::mt19937* rng, LoraSaved* saved) {
  base.forward(be, y, x, M);
  add_lora_term(be, y, x, M, lora, dropout, rng, saved);
}

void linear_forward_many(Backend& be, const float* x, int M, const LinearCall* calls, int count, float dropout,
                         std::mt19937* rng) {
  bool quantized = count > 1;
  for (int i = 0; i < count; i++) quantized = quantized && calls[i].base->host->quantized;
  if (!quantized) {
    for (int i = 0; i < count; i++)
      linear_forward(be, calls[i].y, x, M, *calls[i].base, calls[i].lora, dropout, rng, calls[i].saved);
    return;
  }
  std::vector<float*> outs;
  std::vector<const Nf4Matrix*> ws;
  std::vector<const float*> biases;
  for (int i = 0; i < count; i++) {
    outs.push_back(calls[i].y);
    ws.push_back(&calls[i].base->host->q);
    biases.push_back(calls[i].base->bias.get());
  }
  be.matmul_nf4_many(outs.data(), x, ws.data(), biases.data(), count, M);
  for (int i = 0; i < count; i++) add_lora_term(be, calls[i].y, x, M, calls[i].lora, dropout, rng, calls[i].saved);
}

void linear_backward(Backend& be, float* dx, const float* dy, const float* x, int M, const DeviceLinear& base,
                     LoraWeights* lora, float dropout, const LoraSaved& saved, LinearGrads* full, bool dx_fresh) {
  const Linear& lin = *base.host;
  if (lin.quantized) {
    if (dx && dx_fresh) be.matmul_nf4_backward_input_overwrite(dx, dy, lin.q, M);
    else if (dx) be.matmul_nf4_backward_input(dx, dy, lin.q, M);
  } else if (dx || full) {
    if (dx && dx_fresh) be.fill_zero(dx, size_t(M) * size_t(lin.in) * sizeof(float));
    be.matmul_backward(dx, full ? full->dw.get() : nullptr, full && !full->db.empty() ? full->db.get() : nullptr, dy, x,
                       base.w.get(), M, lin.in, lin.out);
  }
  if (!lora) return;
  const int r = lora->r, K = lora->in, N = lora->out;
  DeviceArray<float> dys(be, size_t(M) * N), du = DeviceArray<float>::zeros(be, size_t(M) * r);
  be.scale(dys.get(), dy, lora->scale, int64_t(M) * N);
  be.matmul_backward(du.get(), lora->dB.get(), nullptr, dys.get(), saved.u.get(), lora->B_dev.get(), M, r, N);
  if (saved.kept.empty() || !dx) {
    // Without dx only dA is wanted, and it is formed from the input the forward multiplied: the masked one if any.
    const float* xin = saved.kept.empty() ? x : saved.xd.get();
    be.matmul_backward(dx, lora->dA.get(), nullptr, du.get(), xin, lora->A_dev.get(), M, K, r);
    return;
  }
  // Through the dropout mask: d x = d(xd) * keep where kept, 0 where dropped.
  DeviceArray<float> dxd = DeviceArray<float>::zeros(be, size_t(M) * K);
  be.matmul_backward(dxd.get(), lora->dA.get(), nullptr, du.get(), saved.xd.get(), lora->A_dev.get(), M, K, r);
  be.dropout_backward(dx, dxd.get(), saved.kept.get(), 1.0f / (1.0f - dropout), int64_t(M) * K);
}

}  // namespace dpo
