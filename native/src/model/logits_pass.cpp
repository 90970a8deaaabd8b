// Chunked lm_head + log-softmax (docs/reference/dpo-loss.md#sequence-log-probs,
// docs/performance.md#logits-only-where-scored): the scored rows are gathered, 32 at a time go through lm_head and the
// log-softmax; the backward recomputes each chunk's logits instead of keeping them. Each row's arithmetic is the same
// whichever rows surround it (batch-invariant ops), so skipping unscored rows changes no log-prob.
#include "model/logits_pass.h"

#include <algorithm>

namespace dpo {

namespace {
constexpr int kChunk = 32;
}

LogitsStats logits_forward(const DeviceWeights& w, Backend& be, const float* hidden, const int* target, int M) {
  const int C = w.config().hidden, V = w.config().vocab;
  LogitsStats s;
  std::vector<int> targets;
  for (int m = 0; m < M; m++)
    if (target[m] >= 0) s.rows.push_back(m), targets.push_back(target[m]);
  const int R = int(s.rows.size());
  s.rows_dev = DeviceArray<int>::from_host(be, s.rows);
  s.target_dev = DeviceArray<int>::from_host(be, targets);
  s.lse.ensure(be, size_t(R));

  // Every row's logit sum: hidden . (sum of lm_head rows), in one (M,C) x (C,1) product.
  DeviceArray<float> sums(be, size_t(M));
  be.matmul(sums.get(), hidden, w.lm_head_row_sum.get(), nullptr, M, C, 1);
  const std::vector<float> sums_host = sums.to_host();
  s.row_sum.assign(sums_host.begin(), sums_host.end());

  DeviceArray<float> logp(be, size_t(R));
  const size_t chunk = size_t(std::min(kChunk, std::max(R, 1)));
  DeviceArray<float> h(be, chunk * C), logits(be, chunk * V);
  for (int r0 = 0; r0 < R; r0 += kChunk) {
    const int n = std::min(kChunk, R - r0);
    be.gather_rows(h.get(), hidden, s.rows_dev.get() + r0, n, C);
    w.lm_head_logits(be, logits.get(), h.get(), n);
    be.logsoftmax_gather(logp.get() + r0, s.lse.get() + r0, logits.get(), s.target_dev.get() + r0, n, V);
  }
  const std::vector<float> logp_host = logp.to_host();
  s.logp.assign(size_t(M), 0.0f);
  for (int i = 0; i < R; i++) s.logp[size_t(s.rows[size_t(i)])] = logp_host[size_t(i)];
  return s;
}

void logits_backward(float* dhidden, const DeviceWeights& w, Backend& be, const float* hidden, const LogitsStats& stats,
                     const float* dlogp, int M, float* dlm_head) {
  const int C = w.config().hidden, V = w.config().vocab, R = int(stats.rows.size());
  std::vector<float> dlogp_rows(static_cast<size_t>(R));
  for (int i = 0; i < R; i++) dlogp_rows[size_t(i)] = dlogp[stats.rows[size_t(i)]];
  DeviceArray<float> dlogp_d = DeviceArray<float>::from_host(be, dlogp_rows);
  const size_t chunk = size_t(std::min(kChunk, std::max(R, 1)));
  DeviceArray<float> h(be, chunk * C), dh(be, chunk * C), logits(be, chunk * V), dlogits(be, chunk * V);
  for (int r0 = 0; r0 < R; r0 += kChunk) {
    const int n = std::min(kChunk, R - r0);
    bool any = false;
    for (int r = 0; r < n; r++) any = any || dlogp_rows[size_t(r0 + r)] != 0.0f;
    if (!any) continue;
    const int* rows = stats.rows_dev.get() + r0;
    be.gather_rows(h.get(), hidden, rows, n, C);
    be.gather_rows(dh.get(), dhidden, rows, n, C);  // accumulate onto what dhidden holds
    w.lm_head_logits(be, logits.get(), h.get(), n);
    be.logsoftmax_gather_backward(dlogits.get(), dlogp_d.get() + r0, logits.get(), stats.lse.get() + r0,
                                  stats.target_dev.get() + r0, n, V);
    // lm_head is frozen in LoRA training (dlm_head null): only the input gradient then.
    w.lm_head_backward(be, dh.get(), dlm_head, dlogits.get(), h.get(), n);
    be.scatter_rows(dhidden, rows, dh.get(), n, C);
  }
}

}  // namespace dpo
