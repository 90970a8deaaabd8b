// Prompt-prefix sharing (docs/performance.md#prompt-prefix-sharing): the two answers of a DPO pair start with the same
// prompt tokens, whose activations are the same in both under causal attention, so a pair can run as one decoder row
// [prompt, first answer (padded), second answer (padded)] with the second answer's positions restarting at the prompt
// length and its keys skipping the first answer (Backend::attention_key_skip). The layout maps every position of every
// unshared padded sequence to the decoder row that computes it, so scores and metrics are read as before. A caller
// that does not want TRL's logits metric (the reference pass) gets one chained row instead: the positions every
// sequence starts with once, then each pair's [rest of prompt, first answer, second answer] and each other sequence's
// rest, no padding anywhere (docs/performance.md#chained-rows-without-the-logits-metric).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "dpo/backend.h"
#include "model/padded_batch.h"

namespace dpo {

struct ScoringLayout {
  PaddedBatch rows;           // what the decoder runs: ids, pos, valid (rows.B, rows.T); rows.target is not used
  std::vector<int> key_skip;  // (rows.B * rows.T, kKeySkipInts) for attention_key_skip; empty when nothing is packed
  int seq_T = 0;              // the unshared padded length: each sequence's (seq_T, V) block of TRL's logits metric
  // (sequences, seq_T): the decoder row that computes sequence s's position t; -1 past the sequence's end in a chained
  // layout (no row computes its padding). metric_rows: whether every position has a row (TRL's logits metric).
  std::vector<int> row_of;
  bool metric_rows = true;
  // Scored tokens (row, target) for logits_forward_entries: a row's first entry comes before every second one.
  std::vector<int> entry_row, entry_target, entry_seq;
  std::vector<std::vector<int>> seq_entries;  // per sequence, its entries in position order

  bool packed() const { return !key_skip.empty(); }
  const int* key_skip_or_null() const { return packed() ? key_skip.data() : nullptr; }
  int decoder_rows() const { return rows.B * rows.T; }
};

// Leading positions whose decoder rows are the same in both sequences: equal token ids (compared, never assumed from
// the labels), and at least one position of each sequence left after it so that each answer keeps a row of its own.
int shared_prefix_length(const ScoredSequence& a, const ScoredSequence& b);

// Whether a call may pack pairs: the backend implements attention_key_skip and DPO_PREFIX_SHARING is not "0" (the
// switch that benchmarks and tests use to compare both layouts in one process).
bool prefix_sharing_enabled(const Backend& be);

// Validates and pads seqs as make_padded_batch does. With `share`, each (first, second) of `pairs` whose ids start
// alike becomes one decoder row (other sequences keep a row of their own), when that makes fewer decoder rows than the
// unshared layout; otherwise (or without `share`) the layout is the unshared padded batch, row for row.
// metric_rows = false (the caller reads no logits metric): with `share`, one chained row (B = 1) whenever it has fewer
// positions than the padded batch: the C positions that every sequence starts with (capped so that each pair keeps
// its own prompt rows), then per pair [its prompt past C, first answer, second answer] and per other sequence its
// positions past C, each sequence without its last position when that is not scored (nothing reads it). Each row's
// key_skip hides the segments before its own and, for a second answer, the first answer; the scored rows compute the
// same bits as in the padded layout.
ScoringLayout make_scoring_layout(const std::vector<const ScoredSequence*>& seqs,
                                  const std::vector<std::pair<int, int>>& pairs, int32_t pad_id, int vocab,
                                  int max_position, bool share, bool metric_rows = true);

}  // namespace dpo
