// One DPO micro-batch (forward, loss, backward into the LoRA gradients) and one optimizer step
// (global-norm clipping, AdamW or 8-bit AdamW, zeroed gradients): docs/reference/dpo-loss.md,
// docs/reference/trainer.md#gradient-clipping, docs/reference/optimizer.md, docs/reference/hw6-run.md#the-run-in-order.
#include <cmath>
#include <string>

#include "model/decoder.h"
#include "model/logits_pass.h"
#include "model/model_impl.h"
#include "model/shared_prefix.h"
#include "train/dpo_loss.h"
#include "train/dpo_micro_batch.h"
#include "train/step_common.h"

namespace dpo {

void check_dpo_options(const DpoOptions& o) {
  if (!(o.beta > 0)) fail(ErrorCode::BadInput, "beta must be positive");
  if (o.label_smoothing < 0 || o.label_smoothing >= 0.5)
    fail(ErrorCode::BadInput, "label_smoothing must be in [0, 0.5)");
}

ScoringLayout dpo_layout(const std::vector<DpoPair>& pairs, int32_t pad_id, const ModelConfig& c, bool share) {
  const int P = int(pairs.size());
  std::vector<const ScoredSequence*> seqs;
  for (const DpoPair& p : pairs) seqs.push_back(&p.chosen);
  for (const DpoPair& p : pairs) seqs.push_back(&p.rejected);
  std::vector<std::pair<int, int>> twins;
  for (int i = 0; i < P; i++) twins.push_back({i, P + i});
  return make_scoring_layout(seqs, twins, pad_id, c.vocab, c.context, share);
}

std::vector<DpoPairMetrics> dpo_micro_batch_loss(const std::vector<DpoPair>& pairs, const ScoringLayout& lay,
                                                 const std::vector<double>& row_sum,
                                                 const std::vector<float>& entry_logp, int V, const DpoOptions& o,
                                                 std::vector<float>& dlogp) {
  const int P = int(pairs.size()), T = lay.seq_T, S = 2 * P;
  // Per sequence: log-prob sum, scored tokens, mean logit over its padded (T, V) block (prompt rows count for both).
  std::vector<double> logp(size_t(S), 0.0), logits_mean(size_t(S), 0.0);
  std::vector<int> ntok(size_t(S), 0);
  for (int b = 0; b < S; b++) {
    for (int t = 0; t < T; t++)
      logits_mean[size_t(b)] += row_sum[size_t(lay.row_of[size_t(b) * T + t])] / (double(T) * V);
    for (int e : lay.seq_entries[size_t(b)]) logp[size_t(b)] += entry_logp[size_t(e)];
    ntok[size_t(b)] = int(lay.seq_entries[size_t(b)].size());
  }
  const bool average = o.loss == DpoLoss::Ipo;  // TRL averages logps over answer tokens for ipo
  std::vector<DpoPairMetrics> out(static_cast<size_t>(P));
  std::vector<double> dseq(size_t(S), 0.0);  // dLoss/d(logp sum of sequence b)
  for (int i = 0; i < P; i++) {
    const int c = i, r = P + i;
    if (ntok[size_t(c)] == 0 || ntok[size_t(r)] == 0)
      fail(ErrorCode::BadInput, "pair " + std::to_string(i) + " has an answer with no scored tokens");
    const double nc = average ? ntok[size_t(c)] : 1.0, nr = average ? ntok[size_t(r)] : 1.0;
    const double pc = logp[size_t(c)] / nc, pr = logp[size_t(r)] / nr;
    const double rc = pairs[size_t(i)].ref_chosen / nc, rr = pairs[size_t(i)].ref_rejected / nr;
    const double d = (pc - pr) - (rc - rr);
    const DpoLossValue lv = dpo_loss(o.loss, d, o.beta, o.label_smoothing);
    DpoPairMetrics& mt = out[size_t(i)];
    mt.loss = lv.loss;
    mt.chosen_logp = pc;
    mt.rejected_logp = pr;
    mt.chosen_logits_mean = logits_mean[size_t(c)];
    mt.rejected_logits_mean = logits_mean[size_t(r)];
    mt.chosen_reward = o.beta * (pc - rc);
    mt.rejected_reward = o.beta * (pr - rr);
    // The micro-batch loss is the mean over its pairs, then scaled by grad_scale (1/GA).
    const double g = lv.dloss_dd * o.grad_scale / P;
    dseq[size_t(c)] = g / nc;
    dseq[size_t(r)] = -g / nr;
  }
  dlogp.resize(lay.entry_seq.size());
  for (size_t e = 0; e < dlogp.size(); e++) dlogp[e] = float(dseq[size_t(lay.entry_seq[e])]);
  return out;
}

std::vector<DpoPairMetrics> Model::dpo_accumulate(const std::vector<DpoPair>& pairs, int32_t pad_id,
                                                  const DpoOptions& o, const std::atomic<bool>* cancel) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  LoraAdapter* lora = impl_->lora.get();
  if (!lora) fail(ErrorCode::BadInput, "dpo_accumulate needs a LoRA adapter: attach one first");
  if (pairs.empty()) return {};
  check_dpo_options(o);
  const ModelWeights& m = impl_->weights;
  Backend& be = *impl_->backend;
  const int C = m.config.hidden;

  // LoRA dropout draws masks per decoder row, so it keeps the pairs' sequences apart.
  const bool share = lora->config.dropout == 0.0f && prefix_sharing_enabled(be);
  const ScoringLayout lay = dpo_layout(pairs, pad_id, m.config, share);
  const PaddedBatch& pb = lay.rows;
  const int M = lay.decoder_rows();

  check_cancel(cancel);
  DeviceArray<float> hidden(be, size_t(M) * C);
  TrainActs acts;
  decoder_forward_train(hidden.get(), acts, impl_->dev, be, pb.ids.data(), pb.pos.data(), pb.valid.data(), pb.B, pb.T,
                        lora, lay.key_skip_or_null());
  LogitsStats st = logits_forward_entries(impl_->dev, be, hidden.get(), lay.entry_row, lay.entry_target, M, true);
  std::vector<float> dlogp;
  std::vector<DpoPairMetrics> out =
      dpo_micro_batch_loss(pairs, lay, st.row_sum, st.entry_logp, m.config.vocab, o, dlogp);

  check_cancel(cancel);
  DeviceArray<float> dhidden = DeviceArray<float>::zeros(be, size_t(M) * C);
  logits_backward_entries(dhidden.get(), impl_->dev, be, hidden.get(), st, dlogp);
  decoder_backward(dhidden.get(), acts, impl_->dev, be, lora);
  return out;
}

// Everything runs on the backend: per-tensor gradient norms (only those floats come to the host), clipping by
// Backend::scale, the update of A_dev / B_dev in place from device optimizer state, zeroed gradients. Nothing of
// the size of the adapter crosses PCIe. The host copies LoraWeights::A / B are left stale and refreshed lazily
// (LoraWeights::pull_host, called by lora_tensors()): they are read only when an adapter is saved or inspected, once
// per run or checkpoint, while downloading them here would cost a copy of every LoRA weight (27M floats at
// Breeze-7B r64 q,v) every step. On the CPU backend the mirrors alias the host copies, which are then always current.
double Model::optimizer_step(const OptimizerOptions& o) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  LoraAdapter* lora = impl_->lora.get();
  if (!lora) fail(ErrorCode::BadInput, "optimizer_step needs a LoRA adapter: attach one first");
  Backend& be = *impl_->backend;
  std::vector<LoraWeights*> ws;
  for (auto& layer : lora->layers)
    for (auto& w : layer)
      if (w) ws.push_back(w.get());
  std::vector<std::pair<float*, int64_t>> grads;
  for (LoraWeights* w : ws)
    for (DeviceArray<float>* g : {&w->dA, &w->dB}) grads.push_back({g->get(), int64_t(g->size())});
  const float norm = measure_and_clip(be, grads, o.max_grad_norm);

  if (lora->optimizer_8bit != o.eight_bit)
    for (LoraWeights* w : ws) w->optA.reset(), w->optB.reset();
  lora->optimizer_8bit = o.eight_bit;
  const AdamHyper h = adam_hyper(o);
  for (LoraWeights* w : ws) {
    if (!w->optA) {
      const int64_t na = int64_t(w->A.size()), nb = int64_t(w->B.size());
      w->optA = o.eight_bit ? make_device_adamw_8bit(be, na) : make_device_adamw(be, na);
      w->optB = o.eight_bit ? make_device_adamw_8bit(be, nb) : make_device_adamw(be, nb);
    }
    w->optA->update(w->A_dev.writable(), w->dA.get(), h);
    w->optB->update(w->B_dev.writable(), w->dB.get(), h);
    w->host_stale = true;
    w->dA.zero();
    w->dB.zero();
  }
  lora->dropout_rng_at_step = lora->dropout_rng;
  return norm;
}

}  // namespace dpo
