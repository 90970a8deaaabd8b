// Causal grouped-query attention on the CPU, forward and backward, against a key/value store with absolute
// query positions (prefill, training and cached decode alike). Softmax in fp32, masked keys skipped entirely.
#include <algorithm>
#include <cmath>
#include <vector>

#include "dpo/errors.h"
#include "ops.h"
#include "thread_pool.h"
#include "vec.h"

namespace dpo::cpu {

// Every (b, t, h) query row is computed alone from its q, its qpos and sequence b's keys, so the result does not
// depend on B, T or the thread split (batched generation equals one-at-a-time generation).
void attention_forward(float* out /*(B,T,NH*HD)*/, float* probs /*(B,NH,T,S) or null*/, const float* q /*(B,T,NH*HD)*/,
                       const float* k /*(B,S,NKV*HD)*/, const float* v /*(B,S,NKV*HD)*/, const int* qpos /*(B*T)*/,
                       const uint8_t* key_valid /*(B,S) or null*/, int B, int T, int S, int NH, int NKV, int HD,
                       const int* key_skip /*(B*T,2) or null*/) {
  if (NKV <= 0 || NH % NKV != 0) fail(ErrorCode::BadInput, "attention: NH must be a multiple of NKV");
  const int group = NH / NKV;                                  // query head h reads kv head h / group (GQA)
  const float scale = float(1.0 / std::sqrt(double(HD)));      // 1/sqrt(HD), applied to q.k
  const int64_t rows = int64_t(B) * T * NH;
  parallel_for(rows, grain_for(4.0 * S * HD), [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    float* sc = scratch(buf, size_t(S));
    for (int64_t r = r0; r < r1; r++) {
      const int64_t h = r % NH, bt = r / NH, b = bt / T, t = bt % T;
      const float* qr = q + r * HD;
      float* o = out + r * HD;
      float* pr = probs ? probs + ((b * NH + h) * T + t) * S : nullptr;
      const int64_t kvh = h / group;
      // A skipped run [skip0, skip1) shifts the causal bound past it: the row sees the same keys, in the same order,
      // as its unshared sequence would (docs/performance.md#prompt-prefix-sharing).
      const int64_t skip0 = key_skip ? key_skip[2 * bt] : 0, skip1 = key_skip ? key_skip[2 * bt + 1] : 0;
      const int64_t last = std::min<int64_t>(qpos[bt] + (skip1 - skip0), S - 1);  // causal: keys s <= qpos
      auto attends = [&](int64_t s) { return (s < skip0 || s >= skip1) && (!key_valid || key_valid[b * S + s]); };

      float mx = -INFINITY;
      bool any = false;
      for (int64_t s = 0; s <= last; s++) {
        if (!attends(s)) continue;
        sc[s] = dot16(qr, k + ((b * S + s) * NKV + kvh) * HD, HD) * scale;
        mx = any ? std::max(mx, sc[s]) : sc[s];
        any = true;
      }
      std::fill(o, o + HD, 0.0f);
      if (pr) std::fill(pr, pr + S, 0.0f);
      if (!any) continue;  // no attendable key: zeros

      // softmax: exp(s - max), summed in key order, then divided (fp32).
      float sum = 0.0f;
      for (int64_t s = 0; s <= last; s++) {
        if (!attends(s)) continue;
        sc[s] = std::exp(sc[s] - mx);
        sum += sc[s];
      }
      for (int64_t s = 0; s <= last; s++) {
        if (!attends(s)) continue;
        const float p = sc[s] / sum;
        if (pr) pr[s] = p;
        axpy(o, p, v + ((b * S + s) * NKV + kvh) * HD, HD);  // out += p_s v_s, in key order
      }
    }
  });
}

// With z_s = scale q.k_s, p = softmax(z), out = sum_s p_s v_s:
//   dp_s = dout.v_s,  ds_s = p_s (dp_s - sum_s' p_s' dp_s'),
//   dq += scale sum_s ds_s k_s,  dk_s += scale sum_(h,t) ds_s q,  dv_s += sum_(h,t) p_s dout.
// Masked keys have p_s = 0 and get nothing; any p_s == 0 contributes exactly 0, so such entries are skipped.
void attention_backward(float* dq /*(B,T,NH*HD)*/, float* dk /*(B,S,NKV*HD)*/, float* dv /*(B,S,NKV*HD)*/,
                        const float* dout /*(B,T,NH*HD)*/, const float* probs /*(B,NH,T,S)*/,
                        const float* q /*(B,T,NH*HD)*/, const float* k /*(B,S,NKV*HD)*/,
                        const float* v /*(B,S,NKV*HD)*/, int B, int T, int S, int NH, int NKV, int HD) {
  if (NKV <= 0 || NH % NKV != 0) fail(ErrorCode::BadInput, "attention: NH must be a multiple of NKV");
  const int group = NH / NKV;
  const float scale = float(1.0 / std::sqrt(double(HD)));
  thread_local std::vector<float> ds_buf;  // (B,NH,T,S) dL/dz, persists per calling thread
  float* ds = scratch(ds_buf, size_t(int64_t(B) * NH * T * S));

  // Pass 1, per query row: ds and dq.
  const int64_t rows = int64_t(B) * T * NH;
  parallel_for(rows, grain_for(6.0 * S * HD), [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    float* acc = scratch(buf, size_t(HD));
    for (int64_t r = r0; r < r1; r++) {
      const int64_t h = r % NH, bt = r / NH, b = bt / T, t = bt % T;
      const int64_t kvh = h / group;
      const float* pr = probs + ((b * NH + h) * T + t) * S;
      float* dsr = ds + ((b * NH + h) * T + t) * S;
      const float* dor = dout + r * HD;
      float D = 0.0f;  // sum_s p_s dp_s
      for (int64_t s = 0; s < S; s++) {
        dsr[s] = 0.0f;
        if (pr[s] == 0.0f) continue;
        dsr[s] = dot16(dor, v + ((b * S + s) * NKV + kvh) * HD, HD);  // dp_s for now
        D += pr[s] * dsr[s];
      }
      std::fill(acc, acc + HD, 0.0f);
      for (int64_t s = 0; s < S; s++) {
        if (pr[s] == 0.0f) continue;
        dsr[s] = pr[s] * (dsr[s] - D);
        axpy(acc, dsr[s], k + ((b * S + s) * NKV + kvh) * HD, HD);
      }
      if (dq) axpy(dq + r * HD, scale, acc, HD);
    }
  });

  // Pass 2, per (b, kv head, key chunk): dk and dv, summed over the group's query heads and then t, in order.
  if (!dk && !dv) return;
  const int64_t SC = 16, schunks = ceil_div(S, SC);
  parallel_for(int64_t(B) * NKV * schunks, grain_for(4.0 * SC * group * T * HD), [&](int64_t u0, int64_t u1) {
    thread_local std::vector<float> buf;
    float* acck = scratch(buf, size_t(2 * HD));
    float* accv = acck + HD;
    for (int64_t u = u0; u < u1; u++) {
      const int64_t b = u / (NKV * schunks), kvh = (u / schunks) % NKV, c = u % schunks;
      for (int64_t s = c * SC; s < std::min<int64_t>(S, (c + 1) * SC); s++) {
        std::fill(acck, acck + 2 * HD, 0.0f);
        bool touched = false;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
          for (int64_t t = 0; t < T; t++) {
            const int64_t i = ((b * NH + h) * T + t) * S + s;
            const float p = probs[i];
            if (p == 0.0f) continue;
            const int64_t r = (b * T + t) * NH + h;
            axpy(acck, ds[i], q + r * HD, HD);
            axpy(accv, p, dout + r * HD, HD);
            touched = true;
          }
        }
        if (!touched) continue;
        const int64_t off = ((b * S + s) * NKV + kvh) * HD;
        if (dk) axpy(dk + off, scale, acck, HD);
        if (dv)
          for (int d = 0; d < HD; d++) dv[off + d] += accv[d];
      }
    }
  });
}

}  // namespace dpo::cpu
