// Which keys a query row of Backend::attention / attention_key_skip sees (dpo/backend.h): the CPU attention's own
// rule, also read by the chained training step to find the rows a gradient reaches (train/dpo_group_step.cpp), so
// that the two cannot drift apart.
#pragma once
#include <algorithm>
#include <cstdint>

#include "dpo/backend.h"

namespace dpo::cpu {

// The keys a query row attends, in key order, into idx: [0, last] without the skipped runs (skip: the row's
// kKeySkipInts bounds, or null) and without padded keys (valid: the sequence's S key flags, or null when every key
// is valid).
inline int attended_keys(int* idx, int64_t last, const int* skip, const uint8_t* valid) {
  int n = 0;
  int64_t from = 0;
  auto take = [&](int64_t to) {  // keys [from, min(to, last + 1))
    for (int64_t s = from; s < std::min(to, last + 1); s++)
      if (!valid || valid[s]) idx[n++] = int(s);
  };
  for (int run = 0; skip && run < kKeySkipInts / 2; run++) {
    if (skip[2 * run] >= skip[2 * run + 1]) continue;  // empty
    take(skip[2 * run]);
    from = skip[2 * run + 1];
  }
  take(last + 1);
  return n;
}

// How far a row's causal bound moves past its skipped runs: their total length. A row at position qpos of a row of
// S keys attends [0, min(qpos + skipped_length(skip), S - 1)] as attended_keys filters it.
inline int64_t skipped_length(const int* skip) {
  int64_t n = 0;
  for (int run = 0; skip && run < kKeySkipInts / 2; run++) n += std::max(0, skip[2 * run + 1] - skip[2 * run]);
  return n;
}

}  // namespace dpo::cpu
