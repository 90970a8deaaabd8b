// A right-padded batch of scored sequences (docs/reference/dpo-data.md#collation-and-padding): ids padded with the pad
// id, key mask 0 on padding, positions 0..T-1 (docs/reference/model.md#positions-and-padding), and the next-token
// target of every position (-1 where the label is -100).
#pragma once
#include <cstdint>
#include <vector>

#include "dpo/engine.h"

namespace dpo {

struct PaddedBatch {
  int B = 0, T = 0;
  std::vector<int> ids, pos, target;  // (B,T)
  std::vector<uint8_t> valid;         // (B,T)
};

// Validates ids and labels against the vocabulary (E_BAD_INPUT naming the sequence) and the length against the
// model's context (E_TOO_LONG; max_position 0 = not given by the config), and pads.
PaddedBatch make_padded_batch(const std::vector<const ScoredSequence*>& seqs, int32_t pad_id, int vocab,
                              int max_position);

}  // namespace dpo
