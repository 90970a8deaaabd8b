// The small steps the model takes between the big ops (row moves, LoRA's scaled add, dropout, the
// embedding gradient, decode attention), as backend ops so that activations can live in GPU memory. On the CPU they
// are plain loops; their value is that the CUDA backend must reproduce exactly these semantics.
#include <cstring>
#include <string>

#include "core/fp_strict.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"

namespace dpo::cpu {

void scatter_rows(float* dst, const int* rows, const float* src, int M, int width) {
  for (int r = 0; r < M; r++)
    std::memcpy(dst + int64_t(rows[r]) * width, src + int64_t(r) * width, sizeof(float) * size_t(width));
}

void gather_rows(float* dst, const float* src, const int* rows, int M, int width) {
  for (int r = 0; r < M; r++)
    std::memcpy(dst + int64_t(r) * width, src + int64_t(rows[r]) * width, sizeof(float) * size_t(width));
}

void axpy(float* y, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += mul_rn(x[i], a);
}

void scale(float* out, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = mul_rn(x[i], a);
}

void dropout_forward(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = kept[i] ? mul_rn(x[i], keep_scale) : 0.0f;
}

void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (kept[i]) dx[i] += mul_rn(dout[i], keep_scale);
}

void embedding_backward(float* dtable, const float* dout, const int* ids, int M, int C) {
  for (int m = 0; m < M; m++) {
    float* g = dtable + int64_t(ids[m]) * C;
    const float* d = dout + int64_t(m) * C;
    for (int j = 0; j < C; j++) g[j] += d[j];
  }
}

void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int* seq,
                      const int* pos, int M, int S, int NH, int NKV, int HD) {
  const int64_t QD = int64_t(NH) * HD, KVD = int64_t(NKV) * HD;
  for (int r = 0; r < M; r++) {
    if (pos[r] < 0 || pos[r] >= S)
      fail(ErrorCode::Internal, "attention_decode: position " + std::to_string(pos[r]) + " is outside the cache (" +
                                    std::to_string(S) + ")");
    // The sequence's cache rows start at seq*S; S = pos+1 keys makes the work (and the result) what a full-sequence
    // pass computes for that position.
    const int64_t base = int64_t(seq[r]) * S * KVD;
    attention_forward(out + r * QD, nullptr, q + r * QD, kcache + base, vcache + base, &pos[r], nullptr, 1, 1,
                      pos[r] + 1, NH, NKV, HD);
  }
}

}  // namespace dpo::cpu
