// Elementwise CPU ops: the SwiGLU gate (forward and backward), the embedding lookup and the residual add.
#include <cmath>
#include <cstring>
#include <string>

#include "dpo/errors.h"
#include "ops.h"
#include "thread_pool.h"
#include "vec.h"
#include "vec_exp.h"

namespace dpo::cpu {

// out = silu(gate) * up, silu(g) = g / (1 + exp(-g)) as torch's CPU silu. 16 elements at a time; a range's tail
// goes through the same vector code, so an element's bits do not depend on the thread split.
void swiglu_forward(float* out /*(M,F)*/, const float* gate /*(M,F)*/, const float* up /*(M,F)*/, int M, int F) {
  const int64_t n = int64_t(M) * F;
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    const f32x16 one = splat16(1.0f), minus = splat16(-1.0f);
    auto lanes = [&](f32x16 g, f32x16 u) { return g / (one + exp16(g * minus)) * u; };
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) store16(out + i, lanes(load16(gate + i), load16(up + i)));
    if (i < i1)
      store16_tail(out + i, lanes(load16_tail(gate + i, i1 - i, 0.0f), load16_tail(up + i, i1 - i, 0.0f)), i1 - i);
  });
}

// Accumulates, like every backward here (house style): with sig = 1/(1+exp(-g)),
// dgate += dout * up * sig * (1 + g * (1 - sig)),  dup += dout * silu(g). Vectorised as the forward.
void swiglu_backward(float* dgate /*(M,F)*/, float* dup /*(M,F)*/, const float* dout /*(M,F)*/,
                     const float* gate /*(M,F)*/, const float* up /*(M,F)*/, int M, int F) {
  const int64_t n = int64_t(M) * F;
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    const f32x16 one = splat16(1.0f), minus = splat16(-1.0f);
    // One block of `len` elements from i (len 16, or a tail through zero-padded lanes).
    auto block = [&](int64_t i, int64_t len) {
      auto in = [&](const float* p) { return len == kLanes ? load16(p + i) : load16_tail(p + i, len, 0.0f); };
      auto out = [&](float* p, f32x16 v) { len == kLanes ? store16(p + i, v) : store16_tail(p + i, v, len); };
      const f32x16 g = in(gate), d = in(dout);
      const f32x16 sig = one / (one + exp16(g * minus));
      if (dgate) out(dgate, in(dgate) + d * in(up) * (sig * (one + g * (one - sig))));
      if (dup) out(dup, in(dup) + d * (g * sig));
    };
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) block(i, kLanes);
    if (i < i1) block(i, i1 - i);
  });
}

// out[m] = table[ids[m]]; a negative id is a caller bug surfaced as bad input.
void embedding_forward(float* out /*(M,C)*/, const int* ids /*(M)*/, const float* table /*(V,C)*/, int M, int C) {
  for (int m = 0; m < M; m++)
    if (ids[m] < 0) fail(ErrorCode::BadInput, "embedding: negative token id " + std::to_string(ids[m]));
  parallel_for(M, grain_for(double(C)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) std::memcpy(out + m * C, table + int64_t(ids[m]) * C, sizeof(float) * C);
  });
}

// out = a + b elementwise (out may alias a).
void add_forward(float* out /*(n)*/, const float* a /*(n)*/, const float* b /*(n)*/, int64_t n) {
  parallel_for(n, 65536, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) out[i] = a[i] + b[i];
  });
}

}  // namespace dpo::cpu
