// Test helper: scored sequences with TRL-style labels and the small DPO micro-batch that the training suites share.
#pragma once
#include <vector>

#include "dpo/engine.h"

namespace dpo_test {

// ids (taken modulo the vocabulary V) with labels = ids, except the first `prompt` positions, which are -100.
inline dpo::ScoredSequence scored(const std::vector<int>& ids, int prompt, int V) {
  dpo::ScoredSequence s;
  for (int id : ids) s.ids.push_back(id % V);
  s.labels = s.ids;
  for (int t = 0; t < prompt; t++) s.labels[size_t(t)] = -100;
  return s;
}

// Two pairs of different lengths (so padding is exercised) with fixed reference log-probs.
inline std::vector<dpo::DpoPair> sample_pairs(int V) {
  std::vector<dpo::DpoPair> p(2);
  p[0].chosen = scored({1, 5, 9, 33, 12, 2}, 3, V);
  p[0].rejected = scored({1, 5, 9, 40, 3, 22, 18, 2}, 3, V);
  p[1].chosen = scored({1, 7, 50, 11, 2}, 2, V);
  p[1].rejected = scored({1, 7, 4, 2}, 2, V);
  p[0].ref_chosen = -9.5, p[0].ref_rejected = -14.0;
  p[1].ref_chosen = -8.0, p[1].ref_rejected = -5.5;
  return p;
}

}  // namespace dpo_test
