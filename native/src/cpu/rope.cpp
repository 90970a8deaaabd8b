// Rotary position embedding on the CPU (HF LlamaRotaryEmbedding + apply_rotary_pos_emb, rotate-half form),
// forward and its transpose for the backward pass. The frequencies come from the model's RoPE table
// (model/rope_table.h: plain, linear, dynamic, yarn or llama3), computed once on the host.
#include <cmath>
#include <vector>

#include "core/fp_strict.h"
#include "dpo/errors.h"
#include "ops.h"
#include "thread_pool.h"
#include "vec.h"

namespace dpo::cpu {
namespace {

// cos/sin of angle = float(pos) * inv_freq[j] (an fp32 product, as HF's fp32 `inv_freq @ position_ids`).
// torch evaluates cos/sin in fp32 (within an ulp); we evaluate them in double and round once to fp32. transformers
// then multiplies both by the attention scaling in fp32 (`emb.cos() * self.attention_scaling`, yarn's mscale).
void angles(float* cs /*(HD/2)*/, float* sn /*(HD/2)*/, const float* f /*(HD/2)*/, int half, float scaling, int pos) {
  for (int j = 0; j < half; j++) {
    const float a = float(pos) * f[j];
    cs[j] = float(std::cos(double(a)));
    sn[j] = float(std::sin(double(a)));
    if (scaling != 1.0f) {
      cs[j] = mul_rn(cs[j], scaling);
      sn[j] = mul_rn(sn[j], scaling);
    }
  }
}

template <bool kBackward>
void rope_apply(float* x /*(M,H*HD)*/, const int* pos /*(M)*/, int M, int H, int HD, const float* f /*(HD/2)*/,
                float scaling) {
  if (HD % 2 != 0) fail(ErrorCode::BadInput, "rope: head_dim must be even");
  const int half = HD / 2;
  parallel_for(M, grain_for(30.0 * HD + 4.0 * H * HD), [&](int64_t m0, int64_t m1) {
    thread_local std::vector<float> buf;
    float* cs = scratch(buf, size_t(HD));
    float* sn = cs + half;
    for (int64_t m = m0; m < m1; m++) {
      angles(cs, sn, f, half, scaling, pos[m]);
      for (int h = 0; h < H; h++) {
        float* v = x + (m * H + h) * HD;
        for (int j = 0; j < half; j++) {
          const float x1 = v[j], x2 = v[j + half];
          if (!kBackward) {
            // (x * cos) + (rotate_half(x) * sin), rotate_half(x) = cat(-x2, x1); cos/sin repeat over both halves.
            v[j] = mul_rn(x1, cs[j]) + mul_rn(-x2, sn[j]);
            v[j + half] = mul_rn(x2, cs[j]) + mul_rn(x1, sn[j]);
          } else {
            // The transpose rotation: [dx1; dx2] = [c s; -s c] [dy1; dy2].
            v[j] = x1 * cs[j] + x2 * sn[j];
            v[j + half] = x2 * cs[j] - x1 * sn[j];
          }
        }
      }
    }
  });
}

}  // namespace

void rope_forward(float* x /*(M,H*HD)*/, const int* pos /*(M)*/, int M, int H, int HD, const float* inv_freq,
                  float scaling) {
  rope_apply<false>(x, pos, M, H, HD, inv_freq, scaling);
}

void rope_backward(float* dx /*(M,H*HD)*/, const int* pos /*(M)*/, int M, int H, int HD, const float* inv_freq,
                   float scaling) {
  rope_apply<true>(dx, pos, M, H, HD, inv_freq, scaling);
}

}  // namespace dpo::cpu
