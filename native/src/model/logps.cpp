// Sequence log-prob sums as TRL's get_batch_logps computes them (docs/reference/dpo-loss.md#sequence-log-probs): logits
// at t score labels[t+1], positions labelled -100 are skipped, the sum is over answer tokens (EOS included). Each
// scored token's log-prob is returned too (the per-token view of docs/insights.md), from the same pass. A caller
// that reads no logits metric gets one chained row (docs/performance.md#chained-rows-without-the-logits-metric) and a
// last decoder block run at the scored rows only (docs/performance.md#last-layer-only-where-scored).
#include <algorithm>
#include <cmath>

#include "model/decoder.h"
#include "model/last_block_rows.h"
#include "model/logits_pass.h"
#include "model/model_impl.h"
#include "model/shared_prefix.h"

namespace dpo {

std::vector<SequenceLogp> Model::logps(const std::vector<ScoredSequence>& batch, int32_t pad_id,
                                       const std::atomic<bool>* cancel, bool use_adapter, bool with_logits_mean) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const ModelWeights& m = impl_->weights;
  if (batch.empty()) return {};
  std::vector<const ScoredSequence*> seqs;
  for (const ScoredSequence& s : batch) seqs.push_back(&s);
  Backend& be = *impl_->backend;
  // Callers pass pairs as neighbours (chosen, rejected, chosen, ...: the reference pass); each neighbouring two that
  // start alike share their prompt's rows (docs/performance.md#prompt-prefix-sharing).
  std::vector<std::pair<int, int>> twins;
  for (int i = 0; i + 1 < int(batch.size()); i += 2) twins.push_back({i, i + 1});
  const ScoringLayout lay = make_scoring_layout(seqs, twins, pad_id, m.config.vocab, m.config.context,
                                                prefix_sharing_enabled(be), with_logits_mean);
  const PaddedBatch& pb = lay.rows;

  check_cancel(cancel);
  const int T = lay.seq_T;
  // Without the metric only the scored rows' hidden states are read: the decoder's last block runs for those rows only
  // (docs/performance.md#last-layer-only-where-scored), and the entries index them in ascending row order.
  // (A batch with nothing scored keeps every row.)
  std::vector<int> entry_row = lay.entry_row;
  const std::vector<int> kept = rows_once(lay.entry_row);
  const bool only_scored = !with_logits_mean && !kept.empty();
  if (only_scored)
    for (int& r : entry_row) r = int(std::lower_bound(kept.begin(), kept.end(), r) - kept.begin());
  const int M = only_scored ? int(kept.size()) : lay.decoder_rows();
  DeviceArray<float> hidden(be, size_t(M) * m.config.hidden);
  decoder_forward(hidden.get(), impl_->dev, be, pb.ids.data(), pb.pos.data(), pb.valid.data(), pb.B, pb.T, nullptr,
                  use_adapter ? impl_->lora.get() : nullptr, lay.key_skip_or_null(), only_scored ? &kept : nullptr);
  check_cancel(cancel);
  LogitsStats st = logits_forward_entries(impl_->dev, be, hidden.get(), entry_row, lay.entry_target, M);

  std::vector<SequenceLogp> out(batch.size());
  for (size_t b = 0; b < out.size(); b++) {
    SequenceLogp& o = out[b];
    if (with_logits_mean) {
      for (int t = 0; t < T; t++) o.logits_mean += st.row_sum[size_t(lay.row_of[b * size_t(T) + size_t(t)])];
      o.logits_mean /= double(T) * m.config.vocab;
    } else {
      o.logits_mean = std::nan("");  // not asked for: a chained layout has no rows for the padding it averages over
    }
    for (int e : lay.seq_entries[b]) {
      o.logp += st.entry_logp[size_t(e)];
      o.token_logps.push_back(st.entry_logp[size_t(e)]);
      o.tokens++;
    }
  }
  return out;
}

}  // namespace dpo
