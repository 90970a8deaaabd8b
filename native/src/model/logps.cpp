// Sequence log-prob sums as TRL's get_batch_logps computes them (docs/reference/dpo-loss.md#sequence-log-probs): logits
// at t score labels[t+1], positions labelled -100 are skipped, the sum is over answer tokens (EOS included). Each
// scored token's log-prob is returned too (the per-token view of docs/insights.md), from the same pass.
#include "model/decoder.h"
#include "model/logits_pass.h"
#include "model/model_impl.h"
#include "model/padded_batch.h"

namespace dpo {

std::vector<SequenceLogp> Model::logps(const std::vector<ScoredSequence>& batch, int32_t pad_id,
                                       const std::atomic<bool>* cancel, bool use_adapter) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const ModelWeights& m = impl_->weights;
  if (batch.empty()) return {};
  std::vector<const ScoredSequence*> seqs;
  for (const ScoredSequence& s : batch) seqs.push_back(&s);
  PaddedBatch pb = make_padded_batch(seqs, pad_id, m.config.vocab, m.config.context);

  check_cancel(cancel);
  const int M = pb.B * pb.T;
  Backend& be = *impl_->backend;
  DeviceArray<float> hidden(be, size_t(M) * m.config.hidden);
  decoder_forward(hidden.get(), impl_->dev, be, pb.ids.data(), pb.pos.data(), pb.valid.data(), pb.B, pb.T, nullptr,
                  use_adapter ? impl_->lora.get() : nullptr);
  check_cancel(cancel);
  LogitsStats st = logits_forward(impl_->dev, be, hidden.get(), pb.target.data(), M);

  std::vector<SequenceLogp> out(batch.size());
  for (int i = 0; i < M; i++) {
    SequenceLogp& o = out[size_t(i / pb.T)];
    o.logits_mean += st.row_sum[size_t(i)];
    if (pb.target[size_t(i)] >= 0) {
      o.logp += st.logp[size_t(i)];
      o.token_logps.push_back(st.logp[size_t(i)]);
      o.tokens++;
    }
  }
  for (SequenceLogp& o : out) o.logits_mean /= double(pb.T) * m.config.vocab;
  return out;
}

}  // namespace dpo
