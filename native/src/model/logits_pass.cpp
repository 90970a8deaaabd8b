// Chunked lm_head + log-softmax (docs/reference/dpo-loss.md#sequence-log-probs,
// docs/performance.md#logits-only-where-scored): the scored rows are gathered, kLogitsChunkRows at a time go through
// lm_head and the log-softmax. A training forward writes its chunks' logits into one kept (rows, V) array while the
// budget allows, so the backward skips those chunks' lm_head products; the rest it recomputes. Each row's arithmetic is
// the same whichever rows surround it (batch-invariant ops), so skipping unscored rows changes no log-prob, and kept
// and recomputed logits are the same bits.
#include "model/logits_pass.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "dpo/errors.h"

namespace dpo {

namespace {
constexpr int kChunk = kLogitsChunkRows;
// At Breeze-7B's vocabulary (61952) this keeps 1083 rows: a micro-batch of HW6 pairs many times over.
constexpr uint64_t kDefaultKeptLogitsBudget = uint64_t(256) << 20;

// Whole chunks only (or every row), so that a chunk's logits are either all kept or all recomputed.
int rows_to_keep(int R, int V) {
  const uint64_t fit = kept_logits_budget() / (uint64_t(V) * sizeof(float));
  if (fit >= uint64_t(R)) return R;
  return int(fit / kChunk) * kChunk;
}

// The longest run of entries from r0 (at most n) whose rows are distinct. dhidden's rows are gathered, added to and
// scattered back per run, so a row twice in one run would keep only one of its two gradients; entry lists put a row's
// second entry far from its first (model/shared_prefix.cpp), so runs rarely end early.
int distinct_run(const std::vector<int>& rows, int r0, int n) {
  for (int j = 1; j < n; j++)
    for (int i = 0; i < j; i++)
      if (rows[size_t(r0 + i)] == rows[size_t(r0 + j)]) return j;
  return n;
}
}  // namespace

uint64_t kept_logits_budget() {
  const char* env = std::getenv("DPO_KEPT_LOGITS_BYTES");
  if (!env || !*env) return kDefaultKeptLogitsBudget;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(env, &end, 10);
  if (*end != '\0' || env[0] == '-')
    fail(ErrorCode::BadInput, std::string("DPO_KEPT_LOGITS_BYTES must be a byte count, got '") + env + "'");
  return uint64_t(v);
}

LogitsStats logits_forward(const DeviceWeights& w, Backend& be, const float* hidden, const int* target, int M,
                           bool keep_for_backward) {
  std::vector<int> rows, targets;
  for (int m = 0; m < M; m++)
    if (target[m] >= 0) rows.push_back(m), targets.push_back(target[m]);
  LogitsStats s = logits_forward_entries(w, be, hidden, std::move(rows), targets, M, keep_for_backward);
  s.logp.assign(size_t(M), 0.0f);
  for (size_t i = 0; i < s.rows.size(); i++) s.logp[size_t(s.rows[i])] = s.entry_logp[i];
  return s;
}

LogitsStats logits_forward_entries(const DeviceWeights& w, Backend& be, const float* hidden, std::vector<int> rows,
                                   const std::vector<int>& targets, int M, bool keep_for_backward) {
  const int C = w.config().hidden, V = w.config().vocab;
  if (rows.size() != targets.size()) fail(ErrorCode::Internal, "logits_forward: rows and targets differ in count");
  LogitsStats s;
  s.rows = std::move(rows);
  const int R = int(s.rows.size());
  s.rows_dev = DeviceArray<int>::from_host(be, s.rows);
  s.target_dev = DeviceArray<int>::from_host(be, targets);
  s.lse.ensure(be, size_t(R));

  // Every row's logit sum: hidden . (sum of lm_head rows), in one (M,C) x (C,1) product.
  DeviceArray<float> sums(be, size_t(M));
  be.matmul(sums.get(), hidden, w.lm_head_row_sum.get(), nullptr, M, C, 1);
  const std::vector<float> sums_host = sums.to_host();
  s.row_sum.assign(sums_host.begin(), sums_host.end());

  s.kept_rows = keep_for_backward ? rows_to_keep(R, V) : 0;
  if (s.kept_rows > 0) s.kept = DeviceArray<float>(be, size_t(s.kept_rows) * V);
  DeviceArray<float> logp(be, size_t(R));
  const size_t chunk = size_t(std::min(kChunk, std::max(R, 1)));
  DeviceArray<float> h(be, chunk * C), scratch;
  if (s.kept_rows < R) scratch = DeviceArray<float>(be, chunk * V);
  for (int r0 = 0; r0 < R; r0 += kChunk) {
    const int n = std::min(kChunk, R - r0);
    float* logits = r0 < s.kept_rows ? s.kept.get() + size_t(r0) * V : scratch.get();
    be.gather_rows(h.get(), hidden, s.rows_dev.get() + r0, n, C);
    w.lm_head_logits(be, logits, h.get(), n);
    be.logsoftmax_gather(logp.get() + r0, s.lse.get() + r0, logits, s.target_dev.get() + r0, n, V);
  }
  s.entry_logp = logp.to_host();
  return s;
}

void logits_backward(float* dhidden, const DeviceWeights& w, Backend& be, const float* hidden, LogitsStats& stats,
                     const float* dlogp, int M, float* dlm_head) {
  (void)M;
  std::vector<float> dlogp_rows(stats.rows.size());
  for (size_t i = 0; i < stats.rows.size(); i++) dlogp_rows[i] = dlogp[stats.rows[i]];
  logits_backward_entries(dhidden, w, be, hidden, stats, dlogp_rows, dlm_head);
}

void logits_backward_entries(float* dhidden, const DeviceWeights& w, Backend& be, const float* hidden,
                             LogitsStats& stats, const std::vector<float>& dlogp_rows, float* dlm_head) {
  const int C = w.config().hidden, V = w.config().vocab, R = int(stats.rows.size());
  if (dlogp_rows.size() != stats.rows.size()) fail(ErrorCode::Internal, "logits_backward: one dlogp per entry");
  DeviceArray<float> dlogp_d = DeviceArray<float>::from_host(be, dlogp_rows);
  const size_t chunk = size_t(std::min(kChunk, std::max(R, 1)));
  const bool recompute = stats.kept_rows < R;
  // The hidden rows are needed to recompute logits, and for lm_head's own gradient (full-parameter training).
  DeviceArray<float> h, scratch, dh(be, chunk * C), dlogits(be, chunk * V);
  if (recompute || dlm_head) h = DeviceArray<float>(be, chunk * C);
  if (recompute) scratch = DeviceArray<float>(be, chunk * V);
  for (int r0 = 0, n = 0; r0 < R; r0 += n) {
    n = distinct_run(stats.rows, r0, std::min(kChunk, R - r0));
    // A run stays on one side of the kept boundary (kept logits are indexed by entry).
    if (r0 < stats.kept_rows) n = std::min(n, stats.kept_rows - r0);
    bool any = false;
    for (int r = 0; r < n; r++) any = any || dlogp_rows[size_t(r0 + r)] != 0.0f;
    if (!any) continue;
    const int* rows = stats.rows_dev.get() + r0;
    const bool kept = r0 < stats.kept_rows;
    if (!kept || dlm_head) be.gather_rows(h.get(), hidden, rows, n, C);
    be.gather_rows(dh.get(), dhidden, rows, n, C);  // accumulate onto what dhidden holds
    const float* logits = kept ? stats.kept.get() + size_t(r0) * V : scratch.get();
    if (!kept) w.lm_head_logits(be, scratch.get(), h.get(), n);
    be.logsoftmax_gather_backward(dlogits.get(), dlogp_d.get() + r0, logits, stats.lse.get() + r0,
                                  stats.target_dev.get() + r0, n, V);
    // lm_head is frozen in LoRA training (dlm_head null): only the input gradient then, which needs no hidden rows.
    w.lm_head_backward(be, dh.get(), dlm_head, dlogits.get(), dlm_head ? h.get() : nullptr, n);
    be.scatter_rows(dhidden, rows, dh.get(), n, C);
  }
  // Free before the decoder's backward, the step's memory peak.
  stats.kept = {};
  stats.kept_rows = 0;
}

}  // namespace dpo
