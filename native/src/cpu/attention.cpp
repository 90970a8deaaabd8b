// Causal grouped-query attention on the CPU, forward and backward, against a key/value store with absolute
// query positions (prefill, training and cached decode alike). Softmax in fp32, masked keys skipped entirely.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attended_keys.h"
#include "dpo/backend.h"
#include "dpo/errors.h"
#include "ops.h"
#include "thread_pool.h"
#include "vec.h"

namespace dpo::cpu {

namespace {

// q . key as dot16_lanes computes it for HD = NV * 16 (no tail), unrolled. Always inlined: where f32x16 is two
// 8-lane registers (AVX2 builds) GCC called it out of line and returned the 16 lanes through memory, four calls per
// reduce16x4 (0.64% of an AVX2 training pass in the call alone).
template <int NV>
[[gnu::always_inline]]
inline f32x16 head_dot_lanes(const float* q, const float* key) {
  f32x16 acc{};
  for (int j = 0; j < NV; j++) acc += load16(q + j * kLanes) * load16(key + j * kLanes);
  return acc;
}

// d[i] = a . row idx[i] (rows `stride` floats apart), as dot16 computes it: four rows per reduction (reduce16x4 gives
// each the bits of reduce16); a last group of fewer than four repeats its last row. NV > 0: HD = NV * 16, unrolled.
template <int NV>
void row_dots(float* d, const float* a, const float* rows, int64_t stride, const int* idx, int n, int HD) {
  auto lanes = [&](const float* row) { return NV > 0 ? head_dot_lanes<NV>(a, row) : dot16_lanes(a, row, HD); };
  for (int i = 0; i < n; i += 4) {
    const int m = std::min(4, n - i);
    auto row = [&](int j) { return rows + idx[i + std::min(j, m - 1)] * stride; };
    float four[4];
    reduce16x4(lanes(row(0)), lanes(row(1)), lanes(row(2)), lanes(row(3)), four);
    for (int j = 0; j < m; j++) d[i + j] = four[j];
  }
}

// out (HD) = sum_i w[i] * row idx[i], added in index order into a zeroed row, with the arithmetic of axpy into memory
// (one fused multiply-add per element and term): in registers when HD = NV * 16.
template <int NV>
void weighted_rows(float* out, const float* w, const float* rows, int64_t stride, const int* idx, int n, int HD) {
  if constexpr (NV > 0) {
    f32x16 acc[NV] = {};
    for (int i = 0; i < n; i++) {
      const f32x16 wi = splat16(w[i]);
      const float* row = rows + idx[i] * stride;
      for (int j = 0; j < NV; j++) acc[j] += wi * load16(row + j * kLanes);
    }
    for (int j = 0; j < NV; j++) store16(out + j * kLanes, acc[j]);
  } else {
    std::fill(out, out + HD, 0.0f);
    for (int i = 0; i < n; i++) axpy(out, w[i], rows + idx[i] * stride, HD);
  }
}

// One query row's scores and weighted values, unrolled for HD = NV * 16 (NV = 0: any HD).
template <int NV>
void attend_row(float* out, float* sc, const float* q, const float* k, const float* v, int64_t stride, const int* idx,
                int n, int HD, float scale, float* probs_row) {
  row_dots<NV>(sc, q, k, stride, idx, n, HD);
  for (int i = 0; i < n; i++) sc[i] *= scale;
  float mx = sc[0];
  for (int i = 1; i < n; i++) mx = std::max(mx, sc[i]);
  // softmax: exp(s - max), summed in key order, then divided (fp32).
  float sum = 0.0f;
  for (int i = 0; i < n; i++) {
    sc[i] = std::exp(sc[i] - mx);
    sum += sc[i];
  }
  for (int i = 0; i < n; i++) {
    sc[i] = sc[i] / sum;
    if (probs_row) probs_row[idx[i]] = sc[i];
  }
  weighted_rows<NV>(out, sc, v, stride, idx, n, HD);  // sum_s p_s v_s, in key order
}

// dsr[0, S) = 0 and idx = the keys with pr[s] != 0 (a NaN counts), in key order; returns how many. With AVX-512, 16
// keys per compare and compress: one key at a time this scan was much of pass 1 at T = 170 (every row walks all S
// keys, the masked half too).
inline int nonzero_keys(float* dsr, const float* pr, int S, int* idx) {
  int n = 0, s = 0;
#if defined(__AVX512F__)
  __m512i keys = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (; s + kLanes <= S; s += kLanes) {
    _mm512_storeu_ps(dsr + s, _mm512_setzero_ps());
    const __mmask16 nz = _mm512_cmp_ps_mask(_mm512_loadu_ps(pr + s), _mm512_setzero_ps(), _CMP_NEQ_UQ);
    _mm512_mask_compressstoreu_epi32(idx + n, nz, keys);
    n += __builtin_popcount(nz);
    keys = _mm512_add_epi32(keys, _mm512_set1_epi32(kLanes));
  }
#endif
  for (; s < S; s++) {
    dsr[s] = 0.0f;
    if (pr[s] != 0.0f) idx[n++] = s;
  }
  return n;
}

// Backward pass 1 for one query row: ds (S floats, 0 where p is 0) and dq_row += scale sum_s ds_s k_s (dq_row may be
// null). work: S + max(S, HD) floats; idx: S ints.
template <int NV>
void query_row_backward(float* dq_row, float* dsr, const float* pr, const float* dor, const float* k, const float* v,
                        int64_t stride, int S, int HD, float scale, float* work, int* idx) {
  const int n = nonzero_keys(dsr, pr, S, idx);
  float *dsc = work, *dp = work + S;
  row_dots<NV>(dp, dor, v, stride, idx, n, HD);  // dp_s = dout . v_s
  float D = 0.0f;                                // sum_s p_s dp_s, in key order
  for (int i = 0; i < n; i++) D = mul_add(pr[idx[i]], dp[i], D);
  for (int i = 0; i < n; i++) {
    dsc[i] = pr[idx[i]] * (dp[i] - D);
    dsr[idx[i]] = dsc[i];
  }
  if (!dq_row) return;
  float* acc = dp;  // the dot products are spent: their floats hold sum_s ds_s k_s
  weighted_rows<NV>(acc, dsc, k, stride, idx, n, HD);
  axpy(dq_row, scale, acc, HD);
}

// Backward pass 2 for KT keys s0.. of kv head kvh (rows `kstride` floats apart in dk and dv): dk_s += scale
// sum_(h,t) ds q_(t,h), dv_s += sum_(h,t) p dout_(t,h), over the group's query heads and then t, in order; keys no
// query attends get nothing. Each q and dout row loaded serves all KT keys (one key at a time, every key re-read all
// T rows of both and walked the probabilities down a column). A query row that attends none of the KT keys is
// skipped; one that attends some adds p = 0, ds = 0 terms to the others, which leaves their sums as they are: the
// sums start at +0 and never become -0, and x + (+-0) = x for every other x. HD = NV * 16; work: 2 HD floats.
template <int NV, int KT>
void key_tile_backward(float* dk, float* dv, int64_t kstride, const float* probs, const float* ds, const float* q,
                       const float* dout, int64_t b, int64_t kvh, int64_t s0, int T, int S, int NH, int group, int HD,
                       float scale, float* work) {
  static_assert(NV > 0, "the tile needs HD = NV * 16");
  f32x16 acck[KT][NV] = {}, accv[KT][NV] = {};
  bool touched[KT] = {};
  for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
    for (int64_t t = 0; t < T; t++) {
      const int64_t i = ((b * NH + h) * T + t) * S + s0;
      bool any = false;
      for (int c = 0; c < KT; c++)
        if (probs[i + c] != 0.0f) any = touched[c] = true;
      if (!any) continue;
      const int64_t r = (b * T + t) * NH + h;
      const float *qr = q + r * HD, *dor = dout + r * HD;
      for (int j = 0; j < NV; j++) {
        const f32x16 qv = load16(qr + j * kLanes), dov = load16(dor + j * kLanes);
        for (int c = 0; c < KT; c++) {
          acck[c][j] += splat16(ds[i + c]) * qv;
          accv[c][j] += splat16(probs[i + c]) * dov;
        }
      }
    }
  }
  float *wk = work, *wv = work + HD;
  for (int c = 0; c < KT; c++) {
    if (!touched[c]) continue;
    for (int j = 0; j < NV; j++) store16(wk + j * kLanes, acck[c][j]), store16(wv + j * kLanes, accv[c][j]);
    if (dk) axpy(dk + c * kstride, scale, wk, HD);
    if (dv)
      for (int d = 0; d < HD; d++) dv[c * kstride + d] += wv[d];
  }
}

// Backward pass 2 for one key s of any HD (NV = 0), as key_tile_backward computes it for one key.
template <int NV>
void key_backward(float* dk_row, float* dv_row, const float* probs, const float* ds, const float* q, const float* dout,
                  int64_t b, int64_t kvh, int64_t s, int T, int S, int NH, int group, int HD, float scale,
                  float* work) {
  if constexpr (NV > 0) {
    key_tile_backward<NV, 1>(dk_row, dv_row, 0, probs, ds, q, dout, b, kvh, s, T, S, NH, group, HD, scale, work);
  } else {
    float *wk = work, *wv = work + HD;
    std::fill(work, work + 2 * HD, 0.0f);
    bool touched = false;
    for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
      for (int64_t t = 0; t < T; t++) {
        const int64_t i = ((b * NH + h) * T + t) * S + s;
        const float p = probs[i];
        if (p == 0.0f) continue;
        const int64_t r = (b * T + t) * NH + h;
        axpy(wk, ds[i], q + r * HD, HD);
        axpy(wv, p, dout + r * HD, HD);
        touched = true;
      }
    }
    if (!touched) return;
    if (dk_row) axpy(dk_row, scale, wk, HD);
    if (dv_row)
      for (int d = 0; d < HD; d++) dv_row[d] += wv[d];
  }
}

// Keys per key_tile_backward: 2 * 3 * NV accumulators (24 zmm at HD = 64) and the shared q and dout vectors.
constexpr int kKeyTile = 3;

// Backward pass 2 for keys [s0, s1): tiles of kKeyTile keys, then one key at a time.
template <int NV>
void keys_backward(float* dk, float* dv, int64_t kstride, const float* probs, const float* ds, const float* q,
                   const float* dout, int64_t b, int64_t kvh, int64_t s0, int64_t s1, int T, int S, int NH, int group,
                   int HD, float scale, float* work) {
  int64_t s = s0;
  if constexpr (NV > 0)
    for (; s + kKeyTile <= s1; s += kKeyTile)
      key_tile_backward<NV, kKeyTile>(dk ? dk + s * kstride : nullptr, dv ? dv + s * kstride : nullptr, kstride, probs,
                                      ds, q, dout, b, kvh, s, T, S, NH, group, HD, scale, work);
  for (; s < s1; s++)
    key_backward<NV>(dk ? dk + s * kstride : nullptr, dv ? dv + s * kstride : nullptr, probs, ds, q, dout, b, kvh, s, T,
                     S, NH, group, HD, scale, work);
}

// The three per-row functions unrolled for HD = NV * 16 (NV = 0: any HD).
struct AttentionRowFns {
  decltype(&attend_row<0>) forward;
  decltype(&query_row_backward<0>) query_backward;
  decltype(&keys_backward<0>) keys_backward;
};
template <int NV>
constexpr AttentionRowFns row_fns() {
  return {attend_row<NV>, query_row_backward<NV>, keys_backward<NV>};
}
AttentionRowFns row_fns_for(int HD) {
  switch (HD % kLanes == 0 ? HD / kLanes : 0) {
    case 1: return row_fns<1>();
    case 2: return row_fns<2>();
    case 3: return row_fns<3>();
    case 4: return row_fns<4>();
    case 5: return row_fns<5>();
    case 6: return row_fns<6>();
    case 7: return row_fns<7>();
    case 8: return row_fns<8>();
    default: return row_fns<0>();
  }
}

}  // namespace

// Every (b, t, h) query row is computed alone from its q, its qpos and sequence b's keys, so the result does not
// depend on B, T or the thread split (batched generation equals one-at-a-time generation).
void attention_forward(float* out /*(B,T,NH*HD)*/, float* probs /*(B,NH,T,S) or null*/, const float* q /*(B,T,NH*HD)*/,
                       const float* k /*(B,S,NKV*HD)*/, const float* v /*(B,S,NKV*HD)*/, const int* qpos /*(B*T)*/,
                       const uint8_t* key_valid /*(B,S) or null*/, int B, int T, int S, int NH, int NKV, int HD,
                       const int* key_skip /*(B*T,2) or null*/) {
  if (NKV <= 0 || NH % NKV != 0) fail(ErrorCode::BadInput, "attention: NH must be a multiple of NKV");
  const int group = NH / NKV;                                  // query head h reads kv head h / group (GQA)
  const float scale = float(1.0 / std::sqrt(double(HD)));      // 1/sqrt(HD), applied to q.k
  const int64_t rows = int64_t(B) * T * NH, kstride = int64_t(NKV) * HD;
  const auto attend = row_fns_for(HD).forward;
  parallel_for(rows, grain_for(4.0 * S * HD), [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    thread_local std::vector<int> idx_buf;
    float* sc = scratch(buf, size_t(S));
    if (idx_buf.size() < size_t(S)) idx_buf.resize(size_t(S));
    int* idx = idx_buf.data();
    for (int64_t r = r0; r < r1; r++) {
      const int64_t h = r % NH, bt = r / NH, b = bt / T, t = bt % T;
      const float* qr = q + r * HD;
      float* o = out + r * HD;
      float* pr = probs ? probs + ((b * NH + h) * T + t) * S : nullptr;
      const int64_t kvh = h / group;
      // Skipped runs shift the causal bound past them: the row sees the same keys, in the same order, as its unshared
      // sequence would (docs/performance.md#prompt-prefix-sharing).
      const int* skip = key_skip ? key_skip + kKeySkipInts * bt : nullptr;
      const int64_t last = std::min<int64_t>(qpos[bt] + skipped_length(skip), S - 1);  // causal: keys s <= qpos
      const int n = attended_keys(idx, last, skip, key_valid ? key_valid + b * S : nullptr);
      if (pr) std::fill(pr, pr + S, 0.0f);
      if (n == 0) {  // no attendable key: zeros
        std::fill(o, o + HD, 0.0f);
        continue;
      }
      const int64_t kv0 = b * S * kstride + kvh * HD;  // sequence b's first key (and value) of head kvh
      attend(o, sc, qr, k + kv0, v + kv0, kstride, idx, n, HD, scale, pr);
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
  const AttentionRowFns fns = row_fns_for(HD);
  const int64_t stride = int64_t(NKV) * HD;

  // Pass 1, per query row: ds and dq.
  const int64_t rows = int64_t(B) * T * NH;
  parallel_for(rows, grain_for(6.0 * S * HD), [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    thread_local std::vector<int> idx_buf;
    float* work = scratch(buf, size_t(S + std::max(S, HD)));
    if (idx_buf.size() < size_t(S)) idx_buf.resize(size_t(S));
    for (int64_t r = r0; r < r1; r++) {
      const int64_t h = r % NH, bt = r / NH, b = bt / T, t = bt % T;
      const int64_t at = ((b * NH + h) * T + t) * S, kv0 = b * S * stride + (h / group) * HD;
      fns.query_backward(dq ? dq + r * HD : nullptr, ds + at, probs + at, dout + r * HD, k + kv0, v + kv0, stride, S,
                         HD, scale, work, idx_buf.data());
    }
  });

  // Pass 2, per (b, kv head, key chunk): dk and dv, summed over the group's query heads and then t, in order.
  if (!dk && !dv) return;
  const int64_t SC = 5 * kKeyTile, schunks = ceil_div(S, SC);
  parallel_for(int64_t(B) * NKV * schunks, grain_for(4.0 * SC * group * T * HD), [&](int64_t u0, int64_t u1) {
    thread_local std::vector<float> buf;
    float* work = scratch(buf, size_t(2 * HD));
    for (int64_t u = u0; u < u1; u++) {
      const int64_t b = u / (NKV * schunks), kvh = (u / schunks) % NKV, c = u % schunks;
      const int64_t off = (b * S * NKV + kvh) * HD;  // key 0 of sequence b, head kvh; key s is s * stride further
      fns.keys_backward(dk ? dk + off : nullptr, dv ? dv + off : nullptr, stride, probs, ds, q, dout, b, kvh, c * SC,
                        std::min<int64_t>(S, (c + 1) * SC), T, S, NH, group, HD, scale, work);
    }
  });
}

}  // namespace dpo::cpu
