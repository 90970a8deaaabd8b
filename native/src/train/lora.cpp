// LoRA: creation with torch's CPU generator semantics (spec §5), and the adapted linear's forward and backward.
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

// torch's CPU uniform_(-bound, bound) for fp32: 24 random bits per value from the mt19937 stream (spec §5).
void torch_uniform(std::mt19937& gen, float* out, size_t n, float bound) {
  const float lo = -bound, span = 2.0f * bound;
  for (size_t i = 0; i < n; i++) {
    const float u = float(gen() & 0xFFFFFFu) * (1.0f / 16777216.0f);
    out[i] = u * span + lo;
  }
}

const Linear& linear_of(const LayerWeights& L, int kind) {
  const Linear* all[kNumLinear] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
  return *all[kind];
}

}  // namespace

std::unique_ptr<LoraAdapter> make_lora(const ModelWeights& m, const LoraConfig& config) {
  if (config.r < 1) fail(ErrorCode::BadInput, "LoRA rank r must be at least 1");
  if (!(config.alpha > 0)) fail(ErrorCode::BadInput, "LoRA alpha must be positive");
  if (config.dropout < 0 || config.dropout >= 1) fail(ErrorCode::BadInput, "LoRA dropout must be in [0, 1)");
  bool target[kNumLinear] = {};
  if (config.targets.empty()) fail(ErrorCode::BadInput, "LoRA needs at least one target module");
  for (const std::string& t : config.targets) {
    int k = linear_kind_from_name(t);
    if (k < 0)
      fail(ErrorCode::BadInput, "unknown LoRA target '" + t +
                                    "' (use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    target[k] = true;
  }
  auto a = std::make_unique<LoraAdapter>();
  a->config = config;
  a->layers.resize(m.layers.size());
  a->dropout_rng.seed(uint32_t(config.seed ^ 0x9e3779b9u));
  std::mt19937 gen(uint32_t(config.seed));
  std::vector<float> discard;
  for (size_t l = 0; l < m.layers.size(); l++) {
    for (int k = 0; k < kNumLinear; k++) {
      if (!target[k]) continue;
      const Linear& base = linear_of(m.layers[l], k);
      auto w = std::make_unique<LoraWeights>();
      w->r = config.r;
      w->in = base.in;
      w->out = base.out;
      w->scale = config.alpha / float(config.r);
      w->A.resize(size_t(w->r) * w->in);
      w->B.assign(size_t(w->out) * w->r, 0.0f);
      w->dA.assign(w->A.size(), 0.0f);
      w->dB.assign(w->B.size(), 0.0f);
      // nn.Linear(in, r) default init, nn.Linear(r, out) default init (both kaiming_uniform_(a=sqrt(5)), bound
      // 1/sqrt(fan_in)), then PEFT's reset_lora_parameters draws A again and zeroes B.
      torch_uniform(gen, w->A.data(), w->A.size(), 1.0f / std::sqrt(float(w->in)));
      discard.resize(w->B.size());
      torch_uniform(gen, discard.data(), discard.size(), 1.0f / std::sqrt(float(w->r)));
      torch_uniform(gen, w->A.data(), w->A.size(), 1.0f / std::sqrt(float(w->in)));
      a->layers[l][size_t(k)] = std::move(w);
    }
  }
  return a;
}

void linear_forward(Backend& be, float* y, const float* x, int M, const Linear& base, const LoraWeights* lora,
                    float dropout, std::mt19937* rng, LoraSaved* saved) {
  base.forward(be, y, x, M);
  if (!lora) return;
  const int r = lora->r, K = lora->in, N = lora->out;
  LoraSaved local;
  LoraSaved& sv = saved ? *saved : local;
  // Inverted dropout on the LoRA input only (PEFT: lora_B(lora_A(dropout(x)))).
  const float* xin = x;
  if (dropout > 0 && rng) {
    sv.xd.resize(size_t(M) * K);
    sv.kept.resize(size_t(M) * K);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    const float keep = 1.0f / (1.0f - dropout);
    for (size_t i = 0; i < sv.xd.size(); i++) {
      sv.kept[i] = uni(*rng) >= dropout;
      sv.xd[i] = sv.kept[i] ? x[i] * keep : 0.0f;
    }
    xin = sv.xd.data();
  } else {
    sv.xd.clear();
    sv.kept.clear();
  }
  sv.u.resize(size_t(M) * r);
  be.matmul(sv.u.data(), xin, lora->A.data(), nullptr, M, K, r);
  std::vector<float> delta(size_t(M) * N);
  be.matmul(delta.data(), sv.u.data(), lora->B.data(), nullptr, M, r, N);
  // result + lora_out * scale, in fp32 as PEFT does with autocast off (spec §5).
  for (size_t i = 0; i < delta.size(); i++) y[i] += delta[i] * lora->scale;
}

void linear_backward(Backend& be, float* dx, const float* dy, const float* x, int M, const Linear& base,
                     LoraWeights* lora, float dropout, const LoraSaved& saved, LinearGrads* full) {
  if (base.quantized)
    be.matmul_nf4_backward_input(dx, dy, base.q, M);
  else
    be.matmul_backward(dx, full ? full->dw.data() : nullptr, full && !full->db.empty() ? full->db.data() : nullptr,
                       dy, x, base.w.data(), M, base.in, base.out);
  if (!lora) return;
  const int r = lora->r, K = lora->in, N = lora->out;
  std::vector<float> dys(size_t(M) * N), du(size_t(M) * r, 0.0f);
  for (size_t i = 0; i < dys.size(); i++) dys[i] = dy[i] * lora->scale;
  be.matmul_backward(du.data(), lora->dB.data(), nullptr, dys.data(), saved.u.data(), lora->B.data(), M, r, N);
  if (saved.kept.empty()) {
    be.matmul_backward(dx, lora->dA.data(), nullptr, du.data(), x, lora->A.data(), M, K, r);
    return;
  }
  // Through the dropout mask: d x = d(xd) * keep where kept, 0 where dropped.
  std::vector<float> dxd(size_t(M) * K, 0.0f);
  be.matmul_backward(dxd.data(), lora->dA.data(), nullptr, du.data(), saved.xd.data(), lora->A.data(), M, K, r);
  const float keep = 1.0f / (1.0f - dropout);
  for (size_t i = 0; i < dxd.size(); i++)
    if (saved.kept[i]) dx[i] += dxd[i] * keep;
}

}  // namespace dpo
