// Rotary position embedding on the CPU (HF LlamaRotaryEmbedding + apply_rotary_pos_emb, rotate-half form),
// forward and its transpose for the backward pass. The frequencies come from the model's RoPE table
// (model/rope_table.h: plain, linear, dynamic, yarn or llama3), computed once on the host.
#include <algorithm>
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

// cos and sin of positions [0, rows) for one table of frequencies, kept by the calling thread: a training step
// applies RoPE six to eight times per layer to rows whose positions repeat (every pair of a chained step starts at 0),
// and each call evaluated HD/2 double cos and sin per row. Rebuilt when the frequencies or the scaling change, grown
// when a position is past its end; the values are angles()'s, so the results are the same bits.
struct AngleTable {
  std::vector<float> freq;
  float scaling = 0.0f;
  int rows = 0;
  std::vector<float> cs, sn;  // (rows, half)

  // Makes the table hold the (cos, sin) rows of positions [0, max_pos] for frequencies f and scaling s.
  void cover(const float* f, int half, float s, int max_pos) {
    if (scaling != s || freq.size() != size_t(half) || !std::equal(freq.begin(), freq.end(), f)) {
      freq.assign(f, f + half), scaling = s, rows = 0;
    }
    if (max_pos < rows) return;
    const int want = std::max(max_pos + 1, 2 * rows);
    cs.resize(size_t(want) * half), sn.resize(size_t(want) * half);
    for (int p = rows; p < want; p++) angles(&cs[size_t(p) * half], &sn[size_t(p) * half], f, half, s, p);
    rows = want;
  }
};

template <bool kBackward>
void rope_apply(float* x /*(M,H*HD)*/, const int* pos /*(M)*/, int M, int H, int HD, const float* f /*(HD/2)*/,
                float scaling) {
  if (HD % 2 != 0) fail(ErrorCode::BadInput, "rope: head_dim must be even");
  const int half = HD / 2;
  int max_pos = M > 0 ? pos[0] : 0, min_pos = max_pos;
  for (int m = 1; m < M; m++) max_pos = std::max(max_pos, pos[m]), min_pos = std::min(min_pos, pos[m]);
  thread_local AngleTable calling_thread_table;
  // A pointer, so that the workers read the calling thread's table (a thread_local named in the task is their own).
  const AngleTable* const table = &calling_thread_table;
  const bool tabled = min_pos >= 0;  // a negative position (never made by the engine) keeps per-row angles
  if (tabled) calling_thread_table.cover(f, half, scaling, max_pos);
  parallel_for(M, grain_for(30.0 * HD + 4.0 * H * HD), [&](int64_t m0, int64_t m1) {
    thread_local std::vector<float> buf;
    float* own = scratch(buf, size_t(HD));
    for (int64_t m = m0; m < m1; m++) {
      const float *cs = own, *sn = own + half;
      if (tabled) cs = &table->cs[size_t(pos[m]) * half], sn = &table->sn[size_t(pos[m]) * half];
      else angles(own, own + half, f, half, scaling, pos[m]);
      for (int h = 0; h < H; h++) {
        float* v = x + (m * H + h) * HD;
        int j = 0;
        if constexpr (!kBackward) {
          // 16 pairs at a time with the scalar lines' roundings: each product rounded on its own (mul_rn16), then
          // the add. mul_rn kept GCC from vectorising the loop.
          for (; j + kLanes <= half; j += kLanes) {
            const f32x16 x1 = load16(v + j), x2 = load16(v + j + half), c = load16(cs + j), sv = load16(sn + j);
            // rn(x1 c) + rn(-x2 s) as a - b: IEEE defines a - b as a + (-b), signed zeros included
            store16(v + j, mul_rn16(x1, c) - mul_rn16(x2, sv));
            store16(v + j + half, mul_rn16(x2, c) + mul_rn16(x1, sv));
          }
        }
        for (; j < half; j++) {
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
