// Chunked lm_head + log-softmax (spec §8, performance.md "only what is needed of the vocabulary"): 32 rows at a
// time in the forward; the backward recomputes each chunk's logits instead of keeping them.
#include "model/logits_pass.h"

#include <algorithm>

namespace dpo {

namespace {
constexpr int kChunk = 32;
}

LogitsStats logits_forward(const ModelWeights& m, Backend& be, const float* hidden, const int* target, int M) {
  const int C = m.config.hidden, V = m.config.vocab;
  LogitsStats s;
  s.logp.assign(size_t(M), 0.0f);
  s.lse.assign(size_t(M), 0.0f);
  s.row_sum.assign(size_t(M), 0.0);
  std::vector<float> logits(size_t(kChunk) * V);
  for (int r0 = 0; r0 < M; r0 += kChunk) {
    const int rows = std::min(kChunk, M - r0);
    be.matmul(logits.data(), hidden + int64_t(r0) * C, m.lm_head_weights(), nullptr, rows, C, V);
    be.logsoftmax_gather(s.logp.data() + r0, s.lse.data() + r0, logits.data(), target + r0, rows, V);
    for (int r = 0; r < rows; r++) {
      double sum = 0;
      const float* lr = logits.data() + int64_t(r) * V;
      for (int j = 0; j < V; j++) sum += lr[j];
      s.row_sum[size_t(r0 + r)] = sum;
    }
  }
  return s;
}

void logits_backward(float* dhidden, const ModelWeights& m, Backend& be, const float* hidden, const int* target,
                     const LogitsStats& stats, const float* dlogp, int M, float* dlm_head) {
  const int C = m.config.hidden, V = m.config.vocab;
  std::vector<float> logits(size_t(kChunk) * V), dlogits(size_t(kChunk) * V);
  for (int r0 = 0; r0 < M; r0 += kChunk) {
    const int rows = std::min(kChunk, M - r0);
    bool any = false;
    for (int r = 0; r < rows; r++) any = any || (target[r0 + r] >= 0 && dlogp[r0 + r] != 0.0f);
    if (!any) continue;
    be.matmul(logits.data(), hidden + int64_t(r0) * C, m.lm_head_weights(), nullptr, rows, C, V);
    be.logsoftmax_gather_backward(dlogits.data(), dlogp + r0, logits.data(), stats.lse.data() + r0, target + r0, rows, V);
    // lm_head is frozen in LoRA training (dlm_head null): only the input gradient then.
    be.matmul_backward(dhidden + int64_t(r0) * C, dlm_head, nullptr, dlogits.data(), hidden + int64_t(r0) * C,
                       m.lm_head_weights(), rows, C, V);
  }
}

}  // namespace dpo
