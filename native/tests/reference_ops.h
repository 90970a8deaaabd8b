// Test helper: plain double-precision references of the decoder ops (the semantics of src/cpu/ops.h written out
// loop by loop, no fp32 anywhere but the inputs), which the op tests compare every backend against, and from which
// the gradient checks take their finite differences.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/half.h"
#include "quant/nf4.h"
#include "random_data.h"

namespace dpo_test {

// out (M,N) = x (M,K) . w (N,K)^T + bias (N, may be null); scale (when non-null) = sum of |terms| per element.
inline void ref_matmul(std::vector<double>& out, std::vector<double>* scale, const std::vector<double>& x,
                       const std::vector<double>& w, const double* bias, int M, int K, int N) {
  out.assign(size_t(M) * N, 0.0);
  if (scale) scale->assign(size_t(M) * N, 0.0);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = bias ? bias[n] : 0.0, a = bias ? std::fabs(bias[n]) : 0.0;
      for (int k = 0; k < K; k++) {
        const double p = x[size_t(m) * K + k] * w[size_t(n) * K + k];
        s += p, a += std::fabs(p);
      }
      out[size_t(m) * N + n] = s;
      if (scale) (*scale)[size_t(m) * N + n] = a;
    }
}

// The input gradient of x . w^T accumulated into dx0: out (M,K) = dx0 + dout (M,N) . w (N,K); scale = |dx0| + the
// sum of |terms| per element.
inline void ref_matmul_dx(std::vector<double>& out, std::vector<double>& scale, const std::vector<float>& dx0,
                          const std::vector<float>& dout, const std::vector<float>& w, int M, int K, int N) {
  out.assign(dx0.begin(), dx0.end());
  scale.resize(dx0.size());
  for (size_t i = 0; i < dx0.size(); i++) scale[i] = std::fabs(dx0[i]);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++) {
        const double p = double(dout[size_t(m) * N + n]) * w[size_t(n) * K + k];
        out[size_t(m) * K + k] += p, scale[size_t(m) * K + k] += std::fabs(p);
      }
}

// out (M,C) = w * x / sqrt(mean(x^2) + eps), row by row.
inline void ref_rmsnorm(std::vector<double>& out, const std::vector<double>& x, const std::vector<double>& w, int M,
                        int C, double eps) {
  out.assign(size_t(M) * C, 0.0);
  for (int m = 0; m < M; m++) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += x[size_t(m) * C + c] * x[size_t(m) * C + c];
    const double r = 1.0 / std::sqrt(ss / C + eps);
    for (int c = 0; c < C; c++) out[size_t(m) * C + c] = w[size_t(c)] * x[size_t(m) * C + c] * r;
  }
}

// Qwen3's q_norm / k_norm: RMSNorm over each head's HD values of a (M, H*HD) projection, one HD-long weight shared
// by all heads, written per head here. The engine runs it as the row RMSNorm over M*H rows of HD.
inline void ref_head_norm(std::vector<double>& out, const std::vector<double>& x, const std::vector<double>& w, int M,
                          int H, int HD, double eps) {
  out.assign(x.size(), 0.0);
  for (int m = 0; m < M; m++)
    for (int h = 0; h < H; h++) {
      const double* xh = x.data() + (size_t(m) * H + h) * HD;
      double ss = 0;
      for (int j = 0; j < HD; j++) ss += xh[j] * xh[j];
      const double r = 1.0 / std::sqrt(ss / HD + eps);
      for (int j = 0; j < HD; j++) out[(size_t(m) * H + h) * HD + j] = w[size_t(j)] * xh[j] * r;
    }
}

// transformers' angles: inv_freq and pos * inv_freq in fp32 (torch), cos/sin of that fp32 angle, times the table's
// attention scaling (yarn). inv_freq: the given fp32 table, or (empty) the plain 1/theta^(2j/HD).
inline void rope_angles(std::vector<double>& cs, std::vector<double>& sn, int pos, int HD, float theta,
                        const std::vector<float>& table, double scaling) {
  cs.resize(size_t(HD / 2));
  sn.resize(size_t(HD / 2));
  for (int j = 0; j < HD / 2; j++) {
    const float inv = table.empty() ? 1.0f / std::pow(theta, float(2 * j) / float(HD)) : table[size_t(j)];
    const float a = float(pos) * inv;
    cs[size_t(j)] = std::cos(double(a)) * scaling;
    sn[size_t(j)] = std::sin(double(a)) * scaling;
  }
}

// In-place rotate-half RoPE of x (M, H*HD), row m at position pos[m].
inline void ref_rope(std::vector<double>& x, const std::vector<int>& pos, int M, int H, int HD, float theta,
                     const std::vector<float>& table = {}, double scaling = 1.0) {
  std::vector<double> cs, sn;
  for (int m = 0; m < M; m++) {
    rope_angles(cs, sn, pos[size_t(m)], HD, theta, table, scaling);
    for (int h = 0; h < H; h++) {
      double* v = x.data() + (size_t(m) * H + h) * HD;
      for (int j = 0; j < HD / 2; j++) {
        const double x1 = v[j], x2 = v[j + HD / 2];
        v[j] = x1 * cs[size_t(j)] - x2 * sn[size_t(j)];
        v[j + HD / 2] = x2 * cs[size_t(j)] + x1 * sn[size_t(j)];
      }
    }
  }
}

struct AttnShape {
  int B, T, S, NH, NKV, HD;
};

// Causal GQA: query (b,t) attends keys s <= qpos[b*T+t] with valid (B,S, null = all); no key -> zeros.
inline void ref_attention(std::vector<double>& out, const std::vector<double>& q, const std::vector<double>& k,
                          const std::vector<double>& v, const std::vector<int>& qpos, const uint8_t* valid,
                          const AttnShape& a) {
  out.assign(size_t(a.B) * a.T * a.NH * a.HD, 0.0);
  const int group = a.NH / a.NKV;
  std::vector<double> sc(size_t(a.S));
  for (int b = 0; b < a.B; b++)
    for (int t = 0; t < a.T; t++)
      for (int h = 0; h < a.NH; h++) {
        const double* qr = q.data() + ((size_t(b) * a.T + t) * a.NH + h) * a.HD;
        double* o = out.data() + ((size_t(b) * a.T + t) * a.NH + h) * a.HD;
        const int kvh = h / group;
        double mx = -INFINITY;
        bool any = false;
        for (int s = 0; s < a.S; s++) {
          const bool ok = s <= qpos[size_t(b) * a.T + t] && (!valid || valid[size_t(b) * a.S + s]);
          sc[size_t(s)] = -INFINITY;
          if (!ok) continue;
          double d = 0;
          for (int e = 0; e < a.HD; e++) d += qr[e] * k[((size_t(b) * a.S + s) * a.NKV + kvh) * a.HD + e];
          sc[size_t(s)] = d / std::sqrt(double(a.HD));
          mx = std::max(mx, sc[size_t(s)]);
          any = true;
        }
        if (!any) continue;
        double sum = 0;
        for (int s = 0; s < a.S; s++) sum += sc[size_t(s)] == -INFINITY ? 0.0 : std::exp(sc[size_t(s)] - mx);
        for (int s = 0; s < a.S; s++) {
          if (sc[size_t(s)] == -INFINITY) continue;
          const double p = std::exp(sc[size_t(s)] - mx) / sum;
          for (int e = 0; e < a.HD; e++) o[e] += p * v[((size_t(b) * a.S + s) * a.NKV + kvh) * a.HD + e];
        }
      }
}

// log(sum(exp(row))) of one row of V logits, max-shifted.
inline double ref_logsumexp(const double* row, int V) {
  double mx = -INFINITY, s = 0;
  for (int v = 0; v < V; v++) mx = std::max(mx, row[v]);
  for (int v = 0; v < V; v++) s += std::exp(row[v] - mx);
  return mx + std::log(s);
}

// The W_bf16 the NF4 GEMM multiplies by: bf16(storage(NF4[c] * absmax)) (docs/reference/linear4bit.md), via the
// scalar dequantizer.
inline std::vector<float> nf4_weights_bf16(const dpo::Nf4Matrix& w) {
  std::vector<float> d(size_t(w.numel()));
  dpo::nf4_dequantize(w, d.data());
  for (auto& x : d) x = dpo::round_bf16(x);
  return d;
}

// A random (N, K) NF4 matrix of normal weights (sigma), first rounded to fp16 when that is the storage dtype, as
// the reference rounds a checkpoint's weights (sigma = 3e-6 gives fp16-subnormal scales).
inline dpo::Nf4Matrix random_nf4(int N, int K, float sigma, dpo::Nf4StorageDType dt, uint32_t seed) {
  auto wf = randn(size_t(N) * K, sigma, seed);
  if (dt == dpo::Nf4StorageDType::F16)
    for (auto& v : wf) v = dpo::round_fp16(v);
  return dpo::nf4_quantize(wf.data(), N, K, dt);
}

inline std::vector<float> bf16_all(std::vector<float> v) {
  for (auto& x : v) x = dpo::round_bf16(x);
  return v;
}

}  // namespace dpo_test
