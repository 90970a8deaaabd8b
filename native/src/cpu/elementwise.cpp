// Elementwise CPU ops: the SwiGLU gate (forward and backward), the embedding lookup and the residual add.
#include <algorithm>
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

namespace {

// One block of 16 lanes of swiglu_backward (null dgate or dup: not accumulated). A function of its own, so that the
// full blocks and the tail run one compiled form of the arithmetic: with the tail's loads and stores inline beside
// the full blocks', GCC fused the dgate multiply-add in one and not the other on an AVX2 build, and a row's bits
// depended on where a thread's range began. `overwrite` adds to zeros instead of the outputs' contents, in the same
// compiled form: the bits of zero-filled outputs.
__attribute__((noinline)) void swiglu_backward_block(float* dgate, float* dup, const float* dout, const float* gate,
                                                     const float* up, bool overwrite) {
  const f32x16 one = splat16(1.0f), minus = splat16(-1.0f);
  const f32x16 g = load16(gate), d = load16(dout);
  const f32x16 sig = one / (one + exp16(g * minus));
  if (dgate) store16(dgate, (overwrite ? f32x16{} : load16(dgate)) + d * load16(up) * (sig * (one + g * (one - sig))));
  if (dup) store16(dup, (overwrite ? f32x16{} : load16(dup)) + d * (g * sig));
}

}  // namespace

// Accumulates, like every backward here (house style), unless `overwrite`: with sig = 1/(1+exp(-g)),
// dgate += dout * up * sig * (1 + g * (1 - sig)),  dup += dout * silu(g). Vectorised as the forward; a tail of fewer
// than 16 elements goes through zero-padded copies.
void swiglu_backward(float* dgate /*(M,F)*/, float* dup /*(M,F)*/, const float* dout /*(M,F)*/,
                     const float* gate /*(M,F)*/, const float* up /*(M,F)*/, int M, int F, bool overwrite) {
  const int64_t n = int64_t(M) * F;
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      swiglu_backward_block(dgate ? dgate + i : nullptr, dup ? dup + i : nullptr, dout + i, gate + i, up + i,
                            overwrite);
    if (i < i1) {
      const int64_t len = i1 - i;
      alignas(64) float t[5][kLanes] = {};  // dgate, dup, dout, gate, up
      const float* from[5] = {dgate, dup, dout, gate, up};
      for (int a = 0; a < 5; a++)
        if (from[a] && !(overwrite && a < 2)) std::copy(from[a] + i, from[a] + i1, t[a]);
      swiglu_backward_block(dgate ? t[0] : nullptr, dup ? t[1] : nullptr, t[2], t[3], t[4], overwrite);
      if (dgate) std::copy(t[0], t[0] + len, dgate + i);
      if (dup) std::copy(t[1], t[1] + len, dup + i);
    }
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
