// lm_head + log-softmax over the rows that have a target only (TRL scores answer tokens; prompt and padding rows
// need no logits), in chunks so that (rows, V) logits never exist at once: per-row target log-probs and logit sums
// (forward), and the gradient back into the hidden states (backward, recomputing each chunk's logits).
// hidden / dhidden / dlm_head are backend memory; targets and the per-row results are host arrays.
#pragma once
#include <vector>

#include "core/device_array.h"
#include "model/device_weights.h"

namespace dpo {

struct LogitsStats {
  std::vector<float> logp;      // (M) log p(target) per row, 0 where target < 0 (host)
  std::vector<double> row_sum;  // (M) sum of the row's logits, every row (TRL's logits/* metric) (host)
  std::vector<int> rows;        // the rows with a target, ascending (host)
  DeviceArray<int> rows_dev;    // the same in backend memory
  DeviceArray<int> target_dev;  // (rows) their targets
  DeviceArray<float> lse;       // (rows) their log-sum-exp, kept for the backward
};

LogitsStats logits_forward(const DeviceWeights& w, Backend& be, const float* hidden, const int* target, int M);

// dhidden (M,C) += d(sum_rows dlogp[m] * logp[m]) / dhidden; dlm_head (V,C) += the lm_head gradient when non-null
// (full-parameter training; the embedding's gradient when tied). dlogp: host (M); rows without a target get none.
void logits_backward(float* dhidden, const DeviceWeights& w, Backend& be, const float* hidden, const LogitsStats& stats,
                     const float* dlogp, int M, float* dlm_head = nullptr);

}  // namespace dpo
