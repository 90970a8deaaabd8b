// How Model::dpo_accumulate_group chains the micro-batches of a step (docs/performance.md#chained-training-steps):
// which run together, and the common start their decoder rows share. Declared apart for the tests.
#pragma once
#include <cstdint>
#include <vector>

#include "dpo/model_config.h"
#include "model/shared_prefix.h"

namespace dpo {

// Bytes a chain of these layouts keeps for its backward, every block (before the common start is shared: a bound).
uint64_t chain_bytes(const ModelConfig& c, const std::vector<const ScoringLayout*>& lays);

// The positions every decoder row of these layouts starts with alike: the same ids at positions 0, 1, ..., valid,
// no skipped keys, never scored, and at least one position of each row left after them.
int common_start(const std::vector<const ScoringLayout*>& lays);

// Per decoder row of a layout, whether its gradient can be nonzero: it is scored, or a row that is has it among its
// keys (attention's key rules: up to its position plus its skipped runs, valid, outside the runs). Not so: padding
// and each sequence's last position. A chain puts the others after every segment's and the backward skips them.
std::vector<uint8_t> gradient_rows(const ScoringLayout& l);

// Consecutive micro-batches in chains whose chain_bytes stay within budget (a chain of one runs on its own); a null
// layout runs on its own and nothing chains across it. Every index appears once, in order.
std::vector<std::vector<size_t>> plan_chains(const std::vector<const ScoringLayout*>& lays, const ModelConfig& c,
                                             uint64_t budget);

}  // namespace dpo
