// One DPO micro-batch as the engine lays it out and scores it, shared by Model::dpo_accumulate (one call per
// micro-batch) and Model::dpo_accumulate_group (several micro-batches in one chained call,
// docs/performance.md#chained-training-steps): the scoring layout, and the loss computed from the scores.
#pragma once
#include <vector>

#include "dpo/engine.h"
#include "model/shared_prefix.h"

namespace dpo {

// Checks the options dpo_accumulate takes (E_BAD_INPUT).
void check_dpo_options(const DpoOptions& o);

// Sequences 0..P-1 are the chosen answers, P..2P-1 the rejected ones, padded together (concatenated_forward,
// docs/reference/dpo-data.md#collation-and-padding), each pair sharing its prompt's rows when `share`
// (docs/performance.md#prompt-prefix-sharing).
ScoringLayout dpo_layout(const std::vector<DpoPair>& pairs, int32_t pad_id, const ModelConfig& c, bool share);

// The micro-batch's DPO loss from its scores: row_sum[i] the logit sum of the layout's decoder row i, entry_logp[e]
// the log-prob of its entry e. Returns each pair's metrics; dlogp[e] = dLoss/d(entry e's log-prob), the micro-batch
// loss being the mean over its pairs scaled by o.grad_scale.
std::vector<DpoPairMetrics> dpo_micro_batch_loss(const std::vector<DpoPair>& pairs, const ScoringLayout& lay,
                                                 const std::vector<double>& row_sum,
                                                 const std::vector<float>& entry_logp, int vocab, const DpoOptions& o,
                                                 std::vector<float>& dlogp);

}  // namespace dpo
