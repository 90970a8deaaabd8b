// lm_head + log-softmax over the rows that have a target only (TRL scores answer tokens; prompt and padding rows
// need no logits), in chunks: per-row target log-probs and logit sums (forward), and the gradient back into the
// hidden states (backward). A training forward keeps the scored rows' logits for the backward while they fit a budget;
// chunks beyond it are recomputed in the backward (docs/performance.md#logits-only-where-scored).
// hidden / dhidden / dlm_head are backend memory; targets and the per-row results are host arrays.
#pragma once
#include <cstdint>
#include <vector>

#include "core/device_array.h"
#include "model/device_weights.h"

namespace dpo {

// Scored rows per lm_head call. Each call streams the whole lm_head (49 MB in bf16 at vocab 32000, hidden 768), so
// wider chunks read it fewer times: 128 rows cost 0.44 ms a row on the CPU where 32 cost 0.67
// (docs/cpu-kernels.md, lm_head numbers); one HW6 pair's ~66 scored rows are then one forward call.
constexpr int kLogitsChunkRows = 128;

struct LogitsStats {
  std::vector<float> logp;      // (M) log p(target) per row, 0 where target < 0 (host; logits_forward only)
  std::vector<float> entry_logp;  // (rows) log p(target) per scored entry (host)
  std::vector<double> row_sum;  // (M) sum of the row's logits, every row (TRL's logits/* metric) (host)
  std::vector<int> rows;        // the scored entries' rows (host): ascending from logits_forward; from
                          // logits_forward_entries as given, a row at most twice (packed answer pairs)
  DeviceArray<int> rows_dev;  // the same in backend memory
  DeviceArray<int> target_dev;  // (rows) their targets
  DeviceArray<float> lse;  // (rows) their log-sum-exp, kept for the backward
  // Training only: the first kept_rows scored rows' logits (kept_rows, V); whole chunks or every row. Released by
  // logits_backward.
  int kept_rows = 0;
  DeviceArray<float> kept;
};

// Bytes of scored-row logits a training forward may keep for its backward: DPO_KEPT_LOGITS_BYTES when set (0 keeps
// none: every chunk is recomputed, as before; tests and benchmarks compare), otherwise 256 MiB.
uint64_t kept_logits_budget();

// keep_for_backward: a training forward (the backward follows); inference passes (reference log-probs) keep nothing.
LogitsStats logits_forward(const DeviceWeights& w, Backend& be, const float* hidden, const int* target, int M,
                           bool keep_for_backward = false);
// The same over explicit (row, target) entries, where a row may be scored for two targets: the last shared prompt row
// of a packed answer pair predicts the first token of both answers (docs/performance.md#prompt-prefix-sharing).
LogitsStats logits_forward_entries(const DeviceWeights& w, Backend& be, const float* hidden, std::vector<int> rows,
                                   const std::vector<int>& targets, int M, bool keep_for_backward = false);

// dhidden (M,C) += d(sum_rows dlogp[m] * logp[m]) / dhidden; dlm_head (V,C) += the lm_head gradient when non-null
// (full-parameter training; the embedding's gradient when tied). dlogp: host (M); rows without a target get none.
// Uses the forward's kept logits where it has them and releases them before returning.
void logits_backward(float* dhidden, const DeviceWeights& w, Backend& be, const float* hidden, LogitsStats& stats,
                     const float* dlogp, int M, float* dlm_head = nullptr);
// The same with dlogp per entry (host, stats.rows.size()); a row scored twice gets both gradients.
void logits_backward_entries(float* dhidden, const DeviceWeights& w, Backend& be, const float* hidden,
                             LogitsStats& stats, const std::vector<float>& dlogp_entries, float* dlm_head = nullptr);

}  // namespace dpo
