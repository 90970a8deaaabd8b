// Elementwise CPU ops: the SwiGLU gate (forward and backward), the embedding lookup and the residual add.
#include <cmath>
#include <cstring>
#include <string>

#include "dpo/errors.h"
#include "ops.h"
#include "thread_pool.h"
#include "vec.h"

namespace dpo::cpu {

// out = silu(gate) * up, silu(g) = g / (1 + exp(-g)) as torch's CPU silu.
void swiglu_forward(float* out /*(M,F)*/, const float* gate /*(M,F)*/, const float* up /*(M,F)*/, int M, int F) {
  const int64_t n = int64_t(M) * F;
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

// Accumulates, like every backward here (house style): with sig = 1/(1+exp(-g)),
// dgate += dout * up * sig * (1 + g * (1 - sig)),  dup += dout * silu(g).
void swiglu_backward(float* dgate /*(M,F)*/, float* dup /*(M,F)*/, const float* dout /*(M,F)*/,
                     const float* gate /*(M,F)*/, const float* up /*(M,F)*/, int M, int F) {
  const int64_t n = int64_t(M) * F;
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      if (dgate) dgate[i] += dout[i] * up[i] * (sig * (1.0f + g * (1.0f - sig)));
      if (dup) dup[i] += dout[i] * (g * sig);
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
