// Sequence log-prob sums as TRL's get_batch_logps computes them (spec §8): logits at t score labels[t+1],
// positions labelled -100 are skipped, the sum is over answer tokens (EOS included).
// lm_head and the log-softmax run over row chunks, so (B*T, V) logits never exist at once.
#include <algorithm>
#include <cmath>

#include "model/decoder.h"
#include "model/model_impl.h"

namespace dpo {

std::vector<SequenceLogp> Model::logps(const std::vector<ScoredSequence>& batch, int32_t pad_id,
                                       const std::atomic<bool>* cancel) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const ModelWeights& m = impl_->weights;
  Backend& be = *impl_->backend;
  const int V = m.config.vocab, C = m.config.hidden;
  const int B = int(batch.size());
  if (B == 0) return {};
  int T = 0;
  for (int b = 0; b < B; b++) {
    const ScoredSequence& s = batch[size_t(b)];
    if (s.ids.empty()) fail(ErrorCode::BadInput, "sequence " + std::to_string(b) + " is empty");
    if (s.labels.size() != s.ids.size())
      fail(ErrorCode::BadInput, "sequence " + std::to_string(b) + ": labels and ids differ in length");
    for (int32_t id : s.ids)
      if (id < 0 || id >= V)
        fail(ErrorCode::BadInput, "sequence " + std::to_string(b) + ": token id " + std::to_string(id) +
                                      " is outside the vocabulary (" + std::to_string(V) + ")");
    T = std::max(T, int(s.ids.size()));
  }

  // Right padding with pad id, attention mask 0 and label -100 (spec §7.4); positions are 0..T-1 (spec §1).
  std::vector<int> ids(size_t(B) * T, pad_id), pos(size_t(B) * T), target(size_t(B) * T, -1);
  std::vector<uint8_t> valid(size_t(B) * T, 0);
  for (int b = 0; b < B; b++) {
    const ScoredSequence& s = batch[size_t(b)];
    for (int t = 0; t < T; t++) {
      size_t i = size_t(b) * T + t;
      pos[i] = t;
      if (t < int(s.ids.size())) {
        ids[i] = s.ids[size_t(t)];
        valid[i] = 1;
      }
      if (t + 1 < int(s.labels.size()) && s.labels[size_t(t + 1)] != -100) target[i] = s.labels[size_t(t + 1)];
    }
  }
  for (int t : target)
    if (t >= V) fail(ErrorCode::BadInput, "label " + std::to_string(t) + " is outside the vocabulary");

  check_cancel(cancel);
  std::vector<float> hidden(size_t(B) * T * C);
  decoder_forward(hidden.data(), m, be, ids.data(), pos.data(), valid.data(), B, T, nullptr);

  std::vector<SequenceLogp> out(static_cast<size_t>(B));
  const int chunk = 32;
  std::vector<float> logits(size_t(chunk) * V), lp(static_cast<size_t>(chunk));
  for (int r0 = 0; r0 < B * T; r0 += chunk) {
    check_cancel(cancel);
    const int rows = std::min(chunk, B * T - r0);
    be.matmul(logits.data(), hidden.data() + int64_t(r0) * C, m.lm_head_weights(), nullptr, rows, C, V);
    be.logsoftmax_gather(lp.data(), nullptr, logits.data(), target.data() + r0, rows, V);
    for (int r = 0; r < rows; r++) {
      SequenceLogp& o = out[size_t((r0 + r) / T)];
      double row_sum = 0;
      const float* lr = logits.data() + int64_t(r) * V;
      for (int j = 0; j < V; j++) row_sum += lr[j];
      o.logits_mean += row_sum;
      if (target[size_t(r0 + r)] >= 0) {
        o.logp += lp[size_t(r)];
        o.tokens++;
      }
    }
  }
  for (SequenceLogp& o : out) o.logits_mean /= double(T) * V;
  return out;
}

}  // namespace dpo
