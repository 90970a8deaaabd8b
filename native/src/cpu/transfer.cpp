// The small steps the model takes between the big ops (row moves, LoRA's scaled add, dropout, plain copies and
// fills, the embedding gradient, decode attention), as backend ops so that activations can live in GPU memory. On
// the CPU they are elementwise loops, split over the pool once they are large: a training step zero-fills and
// copies a few hundred MB of gradient scratch, which on one thread left the other core idle for ~5% of the step
// (docs/performance.md#the-steps-between-the-matmuls). The split never changes an element.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/fp_strict.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "cpu/vec.h"
#include "dpo/errors.h"

namespace dpo::cpu {

namespace {
// Elements per task: ~128 KiB of floats, so a small op stays on the calling thread (waking the pool costs more).
constexpr int64_t kElementGrain = 32768;
// Bytes per task of a copy or fill.
constexpr int64_t kByteGrain = 4 * kElementGrain;

// Rows per task for rows of `width` floats.
int64_t row_grain(int width) { return std::max<int64_t>(1, kElementGrain / std::max(width, 1)); }
}  // namespace

void scatter_rows(float* dst, const int* rows, const float* src, int M, int width) {
  // Rows in ascending order are distinct, so tasks write disjoint rows; otherwise one pass in order (the last write to
  // a repeated row wins, as it always has).
  bool ascending = true;
  for (int r = 1; r < M && ascending; r++) ascending = rows[r] > rows[r - 1];
  parallel_for(M, ascending ? row_grain(width) : int64_t(M), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++)
      std::memcpy(dst + int64_t(rows[r]) * width, src + r * width, sizeof(float) * size_t(width));
  });
}

void gather_rows(float* dst, const float* src, const int* rows, int M, int width) {
  parallel_for(M, row_grain(width), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++)
      std::memcpy(dst + r * width, src + int64_t(rows[r]) * width, sizeof(float) * size_t(width));
  });
}

void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (!bytes || dst == src) return;
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  const uintptr_t da = reinterpret_cast<uintptr_t>(d), sa = reinterpret_cast<uintptr_t>(s);
  if (da < sa + bytes && sa < da + bytes) {  // overlapping ranges: one memmove, whose order handles the overlap
    std::memmove(d, s, bytes);
    return;
  }
  parallel_for(int64_t(bytes), kByteGrain,
               [&](int64_t b0, int64_t b1) { std::memcpy(d + b0, s + b0, size_t(b1 - b0)); });
}

void zero_bytes(void* dst, size_t bytes) {
  char* d = static_cast<char*>(dst);
  parallel_for(int64_t(bytes), kByteGrain, [&](int64_t b0, int64_t b1) { std::memset(d + b0, 0, size_t(b1 - b0)); });
}

// 16 lanes at a time, with the scalar loop's roundings: the product rounded on its own (mul_rn16), then the add.
void axpy(float* y, const float* x, float a, int64_t n) {
  parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    const f32x16 av = splat16(a);
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) store16(y + i, load16(y + i) + mul_rn16(load16(x + i), av));
    for (; i < i1; i++) y[i] += mul_rn(x[i], a);
  });
}

void scale(float* out, const float* x, float a, int64_t n) {
  parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    const f32x16 av = splat16(a);
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) store16(out + i, load16(x + i) * av);
    for (; i < i1; i++) out[i] = mul_rn(x[i], a);
  });
}

void dropout_forward(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n) {
  parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) out[i] = kept[i] ? mul_rn(x[i], keep_scale) : 0.0f;
  });
}

void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n) {
  parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
      if (kept[i]) dx[i] += mul_rn(dout[i], keep_scale);
  });
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
