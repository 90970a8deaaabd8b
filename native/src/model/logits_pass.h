// lm_head + log-softmax over row chunks, so (B*T, V) logits never exist at once: per-row target log-probs and
// logit sums (forward), and the gradient back into the hidden states (backward, recomputing each chunk).
#pragma once
#include <vector>

#include "model/weights.h"

namespace dpo {

struct LogitsStats {
  std::vector<float> logp;      // (M) log p(target) per row, 0 where target < 0
  std::vector<float> lse;       // (M) log-sum-exp per row (for the backward)
  std::vector<double> row_sum;  // (M) sum of the row's logits (TRL's logits/* metric)
};

LogitsStats logits_forward(const ModelWeights& m, Backend& be, const float* hidden, const int* target, int M);

// dhidden (M,C) += d(sum_rows dlogp[m] * logp[m]) / dhidden; dlm_head (V,C) += the lm_head gradient when non-null
// (full-parameter training; the embedding's gradient when tied).
void logits_backward(float* dhidden, const ModelWeights& m, Backend& be, const float* hidden, const int* target,
                     const LogitsStats& stats, const float* dlogp, int M, float* dlm_head = nullptr);

}  // namespace dpo
