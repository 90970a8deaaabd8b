// Full-parameter supervised fine-tuning (issue: the demo model is trained this way): cross-entropy on answer tokens
// with gradients for every linear layer, the norms and the embeddings, fp32 AdamW, and saving the weights.
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/logits_pass.h"
#include "model/model_impl.h"
#include "model/padded_batch.h"
#include "train/step_common.h"

namespace dpo {

std::pair<double, int> Model::sft_accumulate(const std::vector<ScoredSequence>& batch, int32_t pad_id, float grad_scale,
                                             const std::atomic<bool>* cancel) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  ModelWeights& m = impl_->weights;
  Backend& be = *impl_->backend;
  if (batch.empty()) return {0.0, 0};
  if (!impl_->full) impl_->full = std::make_unique<FullGrads>(make_full_grads(m, be));
  FullGrads& g = *impl_->full;
  std::vector<const ScoredSequence*> seqs;
  for (const ScoredSequence& s : batch) seqs.push_back(&s);
  PaddedBatch pb = make_padded_batch(seqs, pad_id, m.config.vocab, m.config.context);
  const int M = pb.B * pb.T, C = m.config.hidden;

  check_cancel(cancel);
  DeviceArray<float> hidden(be, size_t(M) * C);
  TrainActs acts;
  decoder_forward_train(hidden.get(), acts, impl_->dev, be, pb.ids.data(), pb.pos.data(), pb.valid.data(), pb.B, pb.T,
                        impl_->lora.get());
  LogitsStats st = logits_forward(impl_->dev, be, hidden.get(), pb.target.data(), M, true);
  int n = 0;
  double loss = 0;
  for (int i = 0; i < M; i++)
    if (pb.target[size_t(i)] >= 0) loss -= st.logp[size_t(i)], n++;
  if (n == 0) fail(ErrorCode::BadInput, "sft batch has no labelled tokens");
  loss /= n;

  check_cancel(cancel);
  std::vector<float> dlogp(size_t(M), 0.0f);
  for (int i = 0; i < M; i++)
    if (pb.target[size_t(i)] >= 0) dlogp[size_t(i)] = -grad_scale / float(n);
  DeviceArray<float> dhidden = DeviceArray<float>::zeros(be, size_t(M) * C);
  float* dlm = m.lm_head.empty() ? g.embed.get() : g.lm_head.get();
  logits_backward(dhidden.get(), impl_->dev, be, hidden.get(), st, dlogp.data(), M, dlm);
  decoder_backward(dhidden.get(), acts, impl_->dev, be, impl_->lora.get(), &g);
  return {loss, n};
}

// As Model::optimizer_step, on the backend: per-tensor norms, clipping by Backend::scale, fp32 AdamW updating each
// weight's mirror (DeviceWeights, or FullGrads::embed_param for an untied embedding) in place, zeroed gradients. The
// backend thus already computes with the updated weights (no re-publication through DeviceWeights::sync). The host
// weights are then refreshed eagerly, unlike LoRA's lazy copies: the forward gathers embedding rows from the host
// copy and save_weights writes the host tensors, and full-parameter training is the small-model path (fp32 weights).
double Model::sft_step(const OptimizerOptions& o) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (!impl_->full) fail(ErrorCode::BadInput, "sft_step needs accumulated gradients: call sft_accumulate first");
  ModelWeights& m = impl_->weights;
  FullGrads& g = *impl_->full;
  Backend& be = *impl_->backend;
  std::vector<std::pair<float*, int64_t>> gs;
  FullGrads::for_each(m, impl_->dev, g, [&](std::vector<float>&, Mirror&, DeviceArray<float>& d) {
    gs.push_back({d.get(), int64_t(d.size())});
  });
  const float norm = measure_and_clip(be, gs, o.max_grad_norm);
  const AdamHyper h = adam_hyper(o);
  size_t i = 0;
  FullGrads::for_each(m, impl_->dev, g, [&](std::vector<float>& w, Mirror& wd, DeviceArray<float>& d) {
    if (g.optimizers.size() <= i) g.optimizers.push_back(make_device_adamw(be, int64_t(w.size())));
    g.optimizers[i]->update(wd.writable(), d.get(), h);
    wd.pull(w);
    i++;
  });
  g.zero();
  impl_->dev.lm_head_changed(be);  // lm_head (or the tied embedding) just changed
  return norm;
}

void Model::save_weights(const std::string& path, bool bf16) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const ModelWeights& m = impl_->weights;
  const ModelConfig& c = m.config;
  std::vector<TensorToWrite> out;
  std::vector<std::vector<uint16_t>> halves;  // keeps bf16 copies alive until written
  halves.reserve(8 + m.layers.size() * 16);
  auto add = [&](const std::string& name, const std::vector<float>& v, std::vector<int64_t> shape) {
    if (v.empty()) fail(ErrorCode::BadInput, "tensor " + name + " is not held in full precision (quantized model?)");
    if (!bf16) {
      out.push_back({name, DType::F32, shape, v.data(), v.size() * sizeof(float)});
      return;
    }
    halves.emplace_back(v.size());
    for (size_t i = 0; i < v.size(); i++) halves.back()[i] = f32_to_bf16(v[i]);
    out.push_back({name, DType::BF16, shape, halves.back().data(), v.size() * 2});
  };
  add("model.embed_tokens.weight", m.embed, {c.vocab, c.hidden});
  for (size_t l = 0; l < m.layers.size(); l++) {
    const LayerWeights& L = m.layers[l];
    const std::string p = "model.layers." + std::to_string(l);
    add(p + ".input_layernorm.weight", L.input_norm, {c.hidden});
    add(p + ".post_attention_layernorm.weight", L.post_norm, {c.hidden});
    if (!L.q_norm.empty()) add(p + ".self_attn.q_norm.weight", L.q_norm, {c.head_dim});
    if (!L.k_norm.empty()) add(p + ".self_attn.k_norm.weight", L.k_norm, {c.head_dim});
    for (int k = 0; k < kNumLinear; k++) {
      const Linear& lin = layer_linear(L, k);
      const std::string name = p + "." + linear_kind_parent(k) + "." + linear_kind_name(k);
      add(name + ".weight", lin.w, {lin.out, lin.in});
      if (!lin.bias.empty()) add(name + ".bias", lin.bias, {lin.out});
    }
  }
  add("model.norm.weight", m.final_norm, {c.hidden});
  if (!m.lm_head.empty()) add("lm_head.weight", m.lm_head, {c.vocab, c.hidden});
  write_safetensors(path, out, {{"format", "pt"}});
}

}  // namespace dpo
