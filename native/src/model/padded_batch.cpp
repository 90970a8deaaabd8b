// Right padding and next-token targets for scoring and training batches
// (docs/reference/dpo-data.md#collation-and-padding, get_batch_logps in docs/reference/dpo-loss.md#sequence-log-probs).
#include "model/padded_batch.h"

#include <algorithm>
#include <string>

namespace dpo {

PaddedBatch make_padded_batch(const std::vector<const ScoredSequence*>& seqs, int32_t pad_id, int vocab,
                              int max_position) {
  PaddedBatch pb;
  pb.B = int(seqs.size());
  if (pad_id < 0 || pad_id >= vocab)
    fail(ErrorCode::BadInput, "pad id " + std::to_string(pad_id) + " is outside the vocabulary");
  for (int b = 0; b < pb.B; b++) {
    const ScoredSequence& s = *seqs[size_t(b)];
    const std::string which = "sequence " + std::to_string(b);
    if (s.ids.empty()) fail(ErrorCode::BadInput, which + " is empty");
    if (s.labels.size() != s.ids.size()) fail(ErrorCode::BadInput, which + ": labels and ids differ in length");
    // Positions past max_position_embeddings have no trained meaning: never attend there silently.
    if (max_position > 0 && s.ids.size() > size_t(max_position))
      fail(ErrorCode::TooLong, which + " has " + std::to_string(s.ids.size()) +
                                   " tokens, more than the model's context (" + std::to_string(max_position) +
                                   " tokens, max_position_embeddings)");
    for (int32_t id : s.ids)
      if (id < 0 || id >= vocab)
        fail(ErrorCode::BadInput,
             which + ": token id " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(vocab) + ")");
    for (int32_t l : s.labels)
      if (l != -100 && (l < 0 || l >= vocab))
        fail(ErrorCode::BadInput, which + ": label " + std::to_string(l) + " is outside the vocabulary");
    pb.T = std::max(pb.T, int(s.ids.size()));
  }
  const size_t n = size_t(pb.B) * pb.T;
  pb.ids.assign(n, pad_id);
  pb.pos.resize(n);
  pb.target.assign(n, -1);
  pb.valid.assign(n, 0);
  for (int b = 0; b < pb.B; b++) {
    const ScoredSequence& s = *seqs[size_t(b)];
    const int len = int(s.ids.size());
    for (int t = 0; t < pb.T; t++) {
      const size_t i = size_t(b) * pb.T + t;
      pb.pos[i] = t;
      if (t < len) {
        pb.ids[i] = s.ids[size_t(t)];
        pb.valid[i] = 1;
      }
      // Logits at t score labels[t+1] (the shift of get_batch_logps).
      if (t + 1 < len && s.labels[size_t(t + 1)] != -100) pb.target[i] = s.labels[size_t(t + 1)];
    }
  }
  return pb;
}

}  // namespace dpo
