// Chunked lm_head + log-softmax (spec §8, performance.md "only what is needed of the vocabulary"): 32 rows at a
// time in the forward; the backward recomputes each chunk's logits instead of keeping them.
#include "model/logits_pass.h"

#include <algorithm>

namespace dpo {

namespace {
constexpr int kChunk = 32;
}

LogitsStats logits_forward(const DeviceWeights& w, Backend& be, const float* hidden, const int* target, int M) {
  const int C = w.config().hidden, V = w.config().vocab;
  LogitsStats s;
  s.target.assign(target, target + M);
  s.target_dev = DeviceArray<int>::from_host(be, target, size_t(M));
  s.lse.ensure(be, size_t(M));
  DeviceArray<float> logp(be, size_t(M));
  DeviceArray<double> row_sum(be, size_t(M));
  DeviceArray<float> logits(be, size_t(std::min(kChunk, M)) * V);
  for (int r0 = 0; r0 < M; r0 += kChunk) {
    const int rows = std::min(kChunk, M - r0);
    be.matmul(logits.get(), hidden + int64_t(r0) * C, w.lm_head.get(), nullptr, rows, C, V);
    be.logsoftmax_gather(logp.get() + r0, s.lse.get() + r0, logits.get(), s.target_dev.get() + r0, rows, V);
    be.row_sums(row_sum.get() + r0, logits.get(), rows, V);
  }
  s.logp = logp.to_host();
  s.row_sum = row_sum.to_host();
  return s;
}

void logits_backward(float* dhidden, const DeviceWeights& w, Backend& be, const float* hidden,
                     const LogitsStats& stats, const float* dlogp, int M, float* dlm_head) {
  const int C = w.config().hidden, V = w.config().vocab;
  const int* target = stats.target.data();
  DeviceArray<float> dlogp_d = DeviceArray<float>::from_host(be, dlogp, size_t(M));
  DeviceArray<float> logits(be, size_t(std::min(kChunk, M)) * V), dlogits(be, size_t(std::min(kChunk, M)) * V);
  for (int r0 = 0; r0 < M; r0 += kChunk) {
    const int rows = std::min(kChunk, M - r0);
    bool any = false;
    for (int r = 0; r < rows; r++) any = any || (target[r0 + r] >= 0 && dlogp[r0 + r] != 0.0f);
    if (!any) continue;
    be.matmul(logits.get(), hidden + int64_t(r0) * C, w.lm_head.get(), nullptr, rows, C, V);
    be.logsoftmax_gather_backward(dlogits.get(), dlogp_d.get() + r0, logits.get(), stats.lse.get() + r0,
                                  stats.target_dev.get() + r0, rows, V);
    // lm_head is frozen in LoRA training (dlm_head null): only the input gradient then.
    be.matmul_backward(dhidden + int64_t(r0) * C, dlm_head, nullptr, dlogits.get(), hidden + int64_t(r0) * C,
                       w.lm_head.get(), rows, C, V);
  }
}

}  // namespace dpo
