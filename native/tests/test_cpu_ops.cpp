// CPU reference ops: every forward against a plain double-precision reference written here, every backward
// against central finite differences of that double forward, batch/thread invariance (bit-exact), and the pool.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "check.h"
#include "random_data.h"
#include "core/half.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "model/rope_table.h"
#include "quant/nf4.h"

using namespace dpo;
using std::vector;

namespace {

using dpo_test::randn;
using dpo_test::randu;

vector<double> to_d(const vector<float>& v) { return vector<double>(v.begin(), v.end()); }

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// |got - want| <= tol * scale elementwise (scale: the magnitude the result is built from); counts and reports.
int check_scaled(const char* what, const float* got, const double* want, const double* scale, size_t n, double tol) {
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    const double err = std::fabs(double(got[i]) - want[i]);
    const double lim = tol * scale[i] + 1e-30;
    worst = std::max(worst, err / (scale[i] + 1e-30));
    if (!(err <= lim)) {
      if (bad < 3) std::printf("  %s[%zu] = %.9g, want %.9g (scale %.3g)\n", what, i, got[i], want[i], scale[i]);
      bad++;
    }
  }
  if (bad) std::printf("  %s: %d of %zu out of tolerance, worst err/scale %.3g\n", what, bad, n, worst);
  dpo_test::failures() += bad ? 1 : 0;
  return bad;
}

// Analytic gradient (float op) vs a numerical one (double): |a - n| <= atol + rtol |n|.
void check_grad(const char* what, const vector<float>& analytic, const vector<double>& numeric, double rtol = 1e-3,
                double atol = 1e-4) {
  int bad = 0;
  for (size_t i = 0; i < numeric.size(); i++) {
    if (!(std::fabs(analytic[i] - numeric[i]) <= atol + rtol * std::fabs(numeric[i]))) {
      if (bad < 3) std::printf("  %s[%zu]: analytic %.8g numeric %.8g\n", what, i, analytic[i], numeric[i]);
      bad++;
    }
  }
  if (bad) std::printf("  %s: %d of %zu gradients off\n", what, bad, numeric.size());
  dpo_test::failures() += bad ? 1 : 0;
}

// Central differences of L(p) = sum(f(p) * G) with respect to every entry of p (double, eps 1e-6).
template <class F>
vector<double> numeric_grad(vector<double>& p, F loss) {
  vector<double> g(p.size());
  const double eps = 1e-6;
  for (size_t i = 0; i < p.size(); i++) {
    const double keep = p[i];
    p[i] = keep + eps;
    const double lp = loss();
    p[i] = keep - eps;
    const double lm = loss();
    p[i] = keep;
    g[i] = (lp - lm) / (2 * eps);
  }
  return g;
}

double dot_loss(const vector<double>& out, const vector<float>& G) {
  double s = 0;
  for (size_t i = 0; i < out.size(); i++) s += out[i] * G[i];
  return s;
}

// ---- double references ----

void ref_matmul(vector<double>& out, vector<double>* scale, const vector<double>& x, const vector<double>& w,
                const double* bias, int M, int K, int N) {
  out.assign(size_t(M) * N, 0.0);
  if (scale) scale->assign(size_t(M) * N, 0.0);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = bias ? bias[n] : 0.0, a = bias ? std::fabs(bias[n]) : 0.0;
      for (int k = 0; k < K; k++) {
        s += x[size_t(m) * K + k] * w[size_t(n) * K + k];
        a += std::fabs(x[size_t(m) * K + k] * w[size_t(n) * K + k]);
      }
      out[size_t(m) * N + n] = s;
      if (scale) (*scale)[size_t(m) * N + n] = a;
    }
}

void ref_rmsnorm(vector<double>& out, const vector<double>& x, const vector<double>& w, int M, int C, double eps) {
  out.assign(size_t(M) * C, 0.0);
  for (int m = 0; m < M; m++) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += x[size_t(m) * C + c] * x[size_t(m) * C + c];
    const double r = 1.0 / std::sqrt(ss / C + eps);
    for (int c = 0; c < C; c++) out[size_t(m) * C + c] = w[size_t(c)] * x[size_t(m) * C + c] * r;
  }
}

// The spec's angles: inv_freq and pos * inv_freq in fp32 (torch), cos/sin of that fp32 angle, times the table's
// attention scaling (yarn). inv_freq: the given fp32 table, or (empty) the plain 1/theta^(2j/HD).
void rope_angles(vector<double>& cs, vector<double>& sn, int pos, int HD, float theta, const vector<float>& table,
                 double scaling) {
  cs.resize(size_t(HD / 2));
  sn.resize(size_t(HD / 2));
  for (int j = 0; j < HD / 2; j++) {
    const float inv = table.empty() ? 1.0f / std::pow(theta, float(2 * j) / float(HD)) : table[size_t(j)];
    const float a = float(pos) * inv;
    cs[size_t(j)] = std::cos(double(a)) * scaling;
    sn[size_t(j)] = std::sin(double(a)) * scaling;
  }
}

void ref_rope(vector<double>& x, const vector<int>& pos, int M, int H, int HD, float theta,
              const vector<float>& table = {}, double scaling = 1.0) {
  vector<double> cs, sn;
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

void ref_attention(vector<double>& out, const vector<double>& q, const vector<double>& k, const vector<double>& v,
                   const vector<int>& qpos, const uint8_t* valid, const AttnShape& a) {
  out.assign(size_t(a.B) * a.T * a.NH * a.HD, 0.0);
  const int group = a.NH / a.NKV;
  vector<double> sc(size_t(a.S));
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

// The W_bf16 the NF4 GEMM multiplies by: bf16(storage(NF4[c] * absmax)) (spec §3), via the scalar dequantizer.
vector<float> nf4_weights_bf16(const Nf4Matrix& w) {
  vector<float> d(size_t(w.numel()));
  nf4_dequantize(w, d.data());
  for (auto& x : d) x = round_bf16(x);
  return d;
}

vector<float> bf16_all(vector<float> v) {
  for (auto& x : v) x = round_bf16(x);
  return v;
}

}  // namespace

// ================================ thread pool ================================

TEST_CASE(thread_pool_covers_range_nested_and_concurrent) {
  for (int threads : {1, 2, 4}) {
    set_cpu_thread_count(threads);
    CHECK(cpu_thread_count() == threads);
    for (int64_t n : {0, 1, 7, 100, 1001}) {
      for (int64_t grain : {1, 3, 64, 5000}) {
        vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> small_chunks{0};
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          if (e - b < grain && e - b < n) small_chunks++;
          for (int64_t i = b; i < e; i++) hits[size_t(i)]++;
        });
        bool ok = true;
        for (auto& h : hits) ok = ok && h.load() == 1;
        CHECK(ok);
        CHECK(small_chunks.load() == 0);
      }
    }
    // nested: runs inline, no deadlock
    std::atomic<int64_t> sum{0};
    parallel_for(8, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++)
        parallel_for(100, 1, [&](int64_t b2, int64_t e2) { sum += e2 - b2; });
    });
    CHECK(sum.load() == 800);
    // concurrent callers are serialised
    std::atomic<int64_t> total{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 3; c++)
      callers.emplace_back([&] {
        for (int r = 0; r < 50; r++) parallel_for(1000, 10, [&](int64_t b, int64_t e) { total += e - b; });
      });
    for (auto& t : callers) t.join();
    CHECK(total.load() == 3 * 50 * 1000);
    // an exception in a task reaches the caller, and the pool still works afterwards
    bool thrown = false;
    try {
      parallel_for(100, 1, [&](int64_t b, int64_t) {
        if (b == 0) throw std::runtime_error("boom");
      });
    } catch (const std::runtime_error&) {
      thrown = true;
    }
    CHECK(thrown);
    std::atomic<int64_t> after{0};
    parallel_for(100, 1, [&](int64_t b, int64_t e) { after += e - b; });
    CHECK(after.load() == 100);
  }
  set_cpu_thread_count(0);
  CHECK(cpu_thread_count() >= 1);
}

// ================================ forward vs double ================================

TEST_CASE(matmul_forward_matches_double) {
  const int shapes[][3] = {{1, 1, 1}, {3, 172, 64}, {7, 64, 1000}, {5, 17, 3}, {2, 1000, 33}, {64, 130, 129}};
  uint32_t seed = 100;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto x = randu(size_t(M) * K, -1, 1, seed++), w = randu(size_t(N) * K, -1, 1, seed++);
    const auto bias = randu(size_t(N), -1, 1, seed++);
    vector<double> ref, scale, bd = to_d(bias);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      vector<float> out(size_t(M) * N, NAN);
      cpu::matmul_forward(out.data(), x.data(), w.data(), with_bias ? bias.data() : nullptr, M, K, N);
      ref_matmul(ref, &scale, to_d(x), to_d(w), with_bias ? bd.data() : nullptr, M, K, N);
      check_scaled("matmul", out.data(), ref.data(), scale.data(), out.size(), 1e-5);
    }
  }
}

TEST_CASE(matmul_nf4_forward_matches_bf16_reference) {
  const int shapes[][3] = {{1, 64, 64}, {3, 172, 64}, {7, 64, 172}, {3, 100, 50}, {16, 320, 96}};
  uint32_t seed = 200;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto wf = randn(size_t(N) * K, 0.05f, seed++);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
    const auto x = randu(size_t(M) * K, -2, 2, seed++);
    const auto bias = randu(size_t(N), -1, 1, seed++);
    vector<float> out(size_t(M) * N, NAN);
    cpu::matmul_nf4_forward(out.data(), x.data(), w, bias.data(), M);
    // exact-input reference: bf16(x) . bf16(fp16(dequant))^T + bias, in double
    vector<double> ref, scale, bd = to_d(bias);
    ref_matmul(ref, &scale, to_d(bf16_all(x)), to_d(nf4_weights_bf16(w)), bd.data(), M, K, N);
    check_scaled("nf4 vs bf16 ref", out.data(), ref.data(), scale.data(), out.size(), 1e-5);
    // and within bf16-level error of the unrounded fp32 product
    vector<float> deq(size_t(N) * K);
    nf4_dequantize(w, deq.data());
    ref_matmul(ref, &scale, to_d(x), to_d(deq), bd.data(), M, K, N);
    check_scaled("nf4 vs fp32 ref", out.data(), ref.data(), scale.data(), out.size(), 1.0 / 128);
  }
}

TEST_CASE(matmul_nf4_decode_is_bit_exact) {
  // One-hot rows of x pick single weights: out[k][n] = W_bf16[n][k] exactly (all other products are exact zeros).
  // Covers every storage dtype, blocks crossing rows, and tiny scales where fp16 goes subnormal.
  const int K = 172, N = 12;
  for (float sigma : {0.05f, 3e-6f}) {
    for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
      auto wf = randn(size_t(N) * K, sigma, 300);
      if (dt == Nf4StorageDType::F16)
        for (auto& v : wf) v = round_fp16(v);
      const Nf4Matrix w = nf4_quantize(wf.data(), N, K, dt);
      vector<float> eye(size_t(K) * K, 0.0f), out(size_t(K) * N);
      for (int k = 0; k < K; k++) eye[size_t(k) * K + k] = 1.0f;
      cpu::matmul_nf4_forward(out.data(), eye.data(), w, nullptr, K);
      const auto wb = nf4_weights_bf16(w);
      int bad = 0;
      for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++) bad += f32_bits(out[size_t(k) * N + n]) != f32_bits(wb[size_t(n) * K + k]);
      CHECK(bad == 0);
      // and the backward's decode: dx = onehot(dout) . W picks rows exactly
      vector<float> eyeN(size_t(N) * N, 0.0f), dx(size_t(N) * K, 0.0f);
      for (int n = 0; n < N; n++) eyeN[size_t(n) * N + n] = 1.0f;
      cpu::matmul_nf4_backward_input(dx.data(), eyeN.data(), w, N);
      CHECK(same_bits(dx.data(), wb.data(), wb.size()));
    }
  }
}

TEST_CASE(matmul_nf4_backward_input_matches_reference) {
  const int shapes[][3] = {{1, 64, 64}, {3, 172, 64}, {7, 64, 172}, {5, 300, 70}, {130, 96, 40}};
  uint32_t seed = 400;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto wf = randn(size_t(N) * K, 0.05f, seed++);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
    const auto dout = randu(size_t(M) * N, -1, 1, seed++);
    const auto dx0 = randu(size_t(M) * K, -1, 1, seed++);
    vector<float> dx = dx0;
    cpu::matmul_nf4_backward_input(dx.data(), dout.data(), w, M);
    const auto wb = to_d(nf4_weights_bf16(w));
    const auto db = to_d(bf16_all(dout));
    vector<double> ref(size_t(M) * K), scale(size_t(M) * K);
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++) {
        double sum = 0, a = 0;
        for (int n = 0; n < N; n++) {
          sum += db[size_t(m) * N + n] * wb[size_t(n) * K + k];
          a += std::fabs(db[size_t(m) * N + n] * wb[size_t(n) * K + k]);
        }
        ref[size_t(m) * K + k] = dx0[size_t(m) * K + k] + sum;  // accumulates
        scale[size_t(m) * K + k] = a + std::fabs(dx0[size_t(m) * K + k]);
      }
    check_scaled("nf4 dx", dx.data(), ref.data(), scale.data(), dx.size(), 1e-5);
  }
}

TEST_CASE(rmsnorm_forward_matches_double) {
  for (int C : {8, 64, 172, 1000}) {
    const int M = 3;
    const auto x = randu(size_t(M) * C, -3, 3, uint32_t(C)), w = randu(size_t(C), 0.5, 1.5, uint32_t(C + 1));
    vector<float> out(size_t(M) * C), rstd(static_cast<size_t>(M));
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), M, C, 1e-5f);
    vector<double> ref;
    ref_rmsnorm(ref, to_d(x), to_d(w), M, C, 1e-5);
    vector<double> scale(ref.size());
    for (size_t i = 0; i < ref.size(); i++) scale[i] = std::fabs(ref[i]) + 1e-30;
    check_scaled("rmsnorm", out.data(), ref.data(), scale.data(), out.size(), 2e-6);
    for (int m = 0; m < M; m++) {
      double ss = 0;
      for (int c = 0; c < C; c++) ss += double(x[size_t(m) * C + c]) * x[size_t(m) * C + c];
      CHECK_CLOSE(rstd[size_t(m)], 1.0 / std::sqrt(ss / C + 1e-5), 0, 2e-6);
    }
  }
}

// Qwen3's q_norm / k_norm: RMSNorm over each head's HD values of a (M, H*HD) projection, one HD-long weight shared
// by all heads, written per head here. The engine runs it as the row RMSNorm over M*H rows of HD.
void ref_head_norm(vector<double>& out, const vector<double>& x, const vector<double>& w, int M, int H, int HD,
                   double eps) {
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

TEST_CASE(qk_head_norm_matches_double) {
  for (const int HD : {8, 64, 128}) {
    const int M = 5, H = 4;
    const auto x = randu(size_t(M) * H * HD, -3, 3, uint32_t(HD)), w = randu(size_t(HD), 0.5, 1.5, uint32_t(HD + 1));
    vector<float> out(x.size()), rstd(size_t(M) * H);
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), M * H, HD, 1e-6f);
    vector<double> ref;
    ref_head_norm(ref, to_d(x), to_d(w), M, H, HD, 1e-6);
    vector<double> scale(ref.size());
    for (size_t i = 0; i < ref.size(); i++) scale[i] = std::fabs(ref[i]) + 1e-30;
    check_scaled("q/k head norm", out.data(), ref.data(), scale.data(), out.size(), 2e-6);
  }
}

TEST_CASE(qk_head_norm_backward_finite_differences) {
  // dx per head, and dw summed over every head of every row (the weight is shared).
  const int M = 3, H = 3, HD = 8;
  const float eps = 1e-6f;
  const auto x = randu(size_t(M) * H * HD, -2, 2, 11), w = randu(HD, 0.5, 1.5, 12);
  const auto G = randu(x.size(), -1, 1, 13);
  auto xd = to_d(x), wd = to_d(w);
  vector<double> out;
  auto loss = [&] {
    ref_head_norm(out, xd, wd, M, H, HD, double(eps));
    return dot_loss(out, G);
  };
  const auto gx = numeric_grad(xd, loss), gw = numeric_grad(wd, loss);
  vector<float> y(x.size()), rstd(size_t(M) * H);
  cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), M * H, HD, eps);
  vector<float> dx(x.size(), 0.0f), dw(w.size(), 0.0f);
  cpu::rmsnorm_backward(dx.data(), dw.data(), G.data(), x.data(), w.data(), rstd.data(), M * H, HD);
  check_grad("head norm dx", dx, gx);
  check_grad("head norm dw", dw, gw);
}

TEST_CASE(rope_forward_matches_double) {
  const int M = 5, H = 3;
  const vector<int> pos = {0, 1, 7, 300, 4095};
  for (int HD : {8, 64, 128}) {
    for (float theta : {10000.0f, 1000000.0f}) {
      const auto x = randu(size_t(M) * H * HD, -2, 2, uint32_t(HD));
      vector<float> y = x;
      const dpo::RopeTable t = dpo::default_rope_table(HD, theta);
      cpu::rope_forward(y.data(), pos.data(), M, H, HD, t.inv_freq.data(), t.attention_scaling);
      vector<double> ref = to_d(x);
      ref_rope(ref, pos, M, H, HD, theta);
      vector<double> scale(ref.size(), 4.0);  // |x1 c| + |x2 s| <= 4
      check_scaled("rope", y.data(), ref.data(), scale.data(), y.size(), 3e-7);
      // position 0 is the identity
      CHECK(same_bits(y.data(), x.data(), size_t(H) * HD));
    }
  }
  // the inv_freq exponent is fp32 2j/HD (torch): j = 1, HD = 8, theta = 10000 -> 1/10000^0.25 = 0.1
  vector<float> v = {1, 0, 0, 0, 0, 0, 0, 0};
  const int p = 10;
  const dpo::RopeTable t8 = dpo::default_rope_table(8, 10000.0f);
  cpu::rope_forward(v.data(), &p, 1, 1, 8, t8.inv_freq.data(), 1.0f);
  CHECK_CLOSE(v[0], std::cos(10.0), 1e-6, 0);
  CHECK_CLOSE(v[4], std::sin(10.0), 1e-6, 0);
}

TEST_CASE(rope_with_a_scaled_table_and_attention_factor_matches_double) {
  // Any table the config produces (llama3, yarn, ...) and yarn's cos/sin factor: the op against the double formula
  // on the same fp32 frequencies (the tables themselves are checked in test_rope_scaling).
  const int M = 4, H = 2, HD = 16;
  const vector<int> pos = {0, 3, 900, 70000};
  const auto table = randu(size_t(HD / 2), 1e-6f, 1.0f, 41);
  for (const float scaling : {1.0f, 1.1386294f}) {
    const auto x = randu(size_t(M) * H * HD, -2, 2, 42);
    vector<float> y = x;
    cpu::rope_forward(y.data(), pos.data(), M, H, HD, table.data(), scaling);
    vector<double> ref = to_d(x);
    ref_rope(ref, pos, M, H, HD, 0.0f, table, scaling);
    vector<double> scale(ref.size(), 4.0 * scaling);
    check_scaled("scaled rope", y.data(), ref.data(), scale.data(), y.size(), 3e-7);
    vector<float> d = y;  // the backward is the transpose: with scaling s it maps y back to s^2 x
    cpu::rope_backward(d.data(), pos.data(), M, H, HD, table.data(), scaling);
    vector<double> back = to_d(x);
    for (double& b : back) b *= double(scaling) * scaling;
    check_scaled("scaled rope transpose", d.data(), back.data(), scale.data(), d.size(), 1e-6);
  }
  // A table of the wrong length is refused by the backend before any work.
  auto be = dpo::make_cpu_backend();
  dpo::RopeTable short_table = dpo::default_rope_table(8, 10000.0f);
  vector<float> buf(size_t(HD), 0.0f);
  const int p0 = 0;
  CHECK_THROWS_CODE(be->rope(buf.data(), &p0, 1, 1, HD, short_table), dpo::ErrorCode::BadInput, "frequency table");
}

TEST_CASE(attention_forward_matches_double) {
  struct Case {
    AttnShape s;
    bool mask;
    int qoff;  // qpos = qoff + t (decode against a cache when T < S)
  };
  const Case cases[] = {
      {{1, 1, 1, 1, 1, 8}, false, 0},  {{2, 5, 5, 8, 4, 8}, false, 0},  {{2, 5, 5, 8, 4, 8}, true, 0},
      {{3, 1, 9, 8, 4, 8}, true, 8},   {{2, 2, 7, 4, 2, 16}, true, 5},  {{1, 6, 6, 2, 2, 64}, false, 0},
      {{2, 3, 40, 4, 1, 24}, true, 37}, {{1, 4, 4, 3, 3, 5}, false, 0},
  };
  uint32_t seed = 500;
  for (const auto& c : cases) {
    const AttnShape& a = c.s;
    const auto q = randu(size_t(a.B) * a.T * a.NH * a.HD, -1, 1, seed++);
    const auto k = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, seed++);
    const auto v = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, seed++);
    vector<int> qpos(size_t(a.B) * a.T);
    for (int b = 0; b < a.B; b++)
      for (int t = 0; t < a.T; t++) qpos[size_t(b) * a.T + t] = c.qoff + t;
    vector<uint8_t> valid(size_t(a.B) * a.S, 1);
    if (c.mask) {
      std::mt19937 rng(seed++);
      for (auto& m : valid) m = (rng() % 4) != 0;
      valid[0] = 0;  // the first query of sequence 0 (qpos 0 in prefill) may then attend nothing
    }
    const uint8_t* vp = c.mask ? valid.data() : nullptr;
    vector<float> out(q.size(), NAN), probs(size_t(a.B) * a.NH * a.T * a.S, NAN);
    cpu::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), qpos.data(), vp, a.B, a.T, a.S,
                           a.NH, a.NKV, a.HD);
    vector<double> ref;
    ref_attention(ref, to_d(q), to_d(k), to_d(v), qpos, vp, a);
    vector<double> scale(ref.size(), 1.0);  // |out| <= max |v| = 1
    check_scaled("attention", out.data(), ref.data(), scale.data(), out.size(), 1e-6);
    // probs: rows sum to 1 (or are all zero when nothing is attendable), masked / future keys exactly 0
    for (int b = 0; b < a.B; b++)
      for (int h = 0; h < a.NH; h++)
        for (int t = 0; t < a.T; t++) {
          double sum = 0;
          bool any = false;
          for (int s = 0; s < a.S; s++) {
            const float p = probs[((size_t(b) * a.NH + h) * a.T + t) * a.S + s];
            const bool ok = s <= qpos[size_t(b) * a.T + t] && (!vp || vp[size_t(b) * a.S + s]);
            if (!ok) CHECK(p == 0.0f);
            any = any || ok;
            sum += p;
          }
          if (any) CHECK_CLOSE(sum, 1.0, 1e-6, 0);
          else CHECK(sum == 0.0);
        }
  }
}

TEST_CASE(attention_query_without_keys_outputs_zeros) {
  const int HD = 8;
  const auto q = randu(HD, -1, 1, 1), k = randu(3 * HD, -1, 1, 2), v = randu(3 * HD, -1, 1, 3);
  const uint8_t valid[3] = {0, 0, 1};
  const int qpos = 1;  // keys 0 and 1 are both padded
  vector<float> out(HD, NAN), probs(3, NAN);
  cpu::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), &qpos, valid, 1, 1, 3, 1, 1, HD);
  for (float o : out) CHECK(o == 0.0f);
  for (float p : probs) CHECK(p == 0.0f);
}

TEST_CASE(swiglu_embedding_add_forward) {
  const int M = 3, F = 172;
  const auto g = randu(size_t(M) * F, -6, 6, 1), u = randu(size_t(M) * F, -2, 2, 2);
  vector<float> out(g.size());
  cpu::swiglu_forward(out.data(), g.data(), u.data(), M, F);
  for (size_t i = 0; i < out.size(); i++) {
    const double gd = g[i], want = gd / (1 + std::exp(-gd)) * u[i];
    CHECK_CLOSE(out[i], want, 1e-7, 1e-6);
  }
  const int V = 10, C = 12;
  const auto table = randu(size_t(V) * C, -1, 1, 3);
  const int ids[4] = {3, 0, 9, 3};
  vector<float> e(size_t(4) * C);
  cpu::embedding_forward(e.data(), ids, table.data(), 4, C);
  for (int m = 0; m < 4; m++) CHECK(same_bits(e.data() + m * C, table.data() + ids[m] * C, C));
  const int bad_ids[2] = {1, -1};
  CHECK_THROWS_CODE(cpu::embedding_forward(e.data(), bad_ids, table.data(), 2, C), ErrorCode::BadInput, "token id");
  auto a = randu(100003, -1, 1, 4);
  const auto b = randu(100003, -1, 1, 5);
  const auto a0 = a;
  cpu::add_forward(a.data(), a.data(), b.data(), int64_t(a.size()));  // out aliases a
  bool ok = true;
  for (size_t i = 0; i < a.size(); i++) ok = ok && a[i] == a0[i] + b[i];
  CHECK(ok);
}

TEST_CASE(logsoftmax_gather_and_argmax) {
  for (int V : {512, 1000, 7}) {
    const int M = 4;
    auto logits = randu(size_t(M) * V, -8, 8, uint32_t(V));
    for (int v = 0; v < V; v++) logits[size_t(V) + v] += 90.0f;  // large logits: must stay stable in fp32
    const vector<int> target = {0, V - 1, -1, V / 2};
    vector<float> logp(M, NAN), lse(M, NAN);
    cpu::logsoftmax_gather_forward(logp.data(), lse.data(), logits.data(), target.data(), M, V);
    for (int m = 0; m < M; m++) {
      double mx = -INFINITY, s = 0;
      for (int v = 0; v < V; v++) mx = std::max(mx, double(logits[size_t(m) * V + v]));
      for (int v = 0; v < V; v++) s += std::exp(double(logits[size_t(m) * V + v]) - mx);
      const double l = mx + std::log(s);
      CHECK_CLOSE(lse[size_t(m)], l, 0, 1e-6);
      if (target[size_t(m)] < 0) CHECK(logp[size_t(m)] == 0.0f);
      else CHECK_CLOSE(logp[size_t(m)], logits[size_t(m) * V + target[size_t(m)]] - l, 2e-5, 1e-6);
    }
    const vector<int> bad = {0, V, 1, 2};
    CHECK_THROWS_CODE(cpu::logsoftmax_gather_forward(logp.data(), lse.data(), logits.data(), bad.data(), M, V),
                      ErrorCode::BadInput, "outside the vocabulary");
    // argmax: first index on ties
    auto x = logits;
    x[2] = x[5] = 1000.0f;
    x[size_t(V) + 1] = x[size_t(V) + V - 1] = 1000.0f;
    vector<int> am(M);
    cpu::argmax_rows(am.data(), x.data(), M, V);
    CHECK(am[0] == 2);
    CHECK(am[1] == 1);
    for (int m = 2; m < M; m++) {
      int best = 0;
      for (int v = 1; v < V; v++)
        if (x[size_t(m) * V + v] > x[size_t(m) * V + best]) best = v;
      CHECK(am[size_t(m)] == best);
    }
  }
}

// ================================ backward vs finite differences ================================

TEST_CASE(matmul_backward_finite_differences) {
  const int M = 3, K = 19, N = 5;
  const auto x = randu(size_t(M) * K, -1, 1, 1), w = randu(size_t(N) * K, -1, 1, 2), b = randu(N, -1, 1, 3);
  const auto G = randu(size_t(M) * N, -1, 1, 4);
  auto xd = to_d(x), wd = to_d(w), bd = to_d(b);
  vector<double> out;
  auto loss = [&] {
    ref_matmul(out, nullptr, xd, wd, bd.data(), M, K, N);
    return dot_loss(out, G);
  };
  const auto gx = numeric_grad(xd, loss), gw = numeric_grad(wd, loss), gb = numeric_grad(bd, loss);
  // accumulate into non-zero buffers, then subtract the initial values
  const auto dx0 = randu(x.size(), -1, 1, 5), dw0 = randu(w.size(), -1, 1, 6), db0 = randu(b.size(), -1, 1, 7);
  auto dx = dx0, dw = dw0, db = db0;
  cpu::matmul_backward(dx.data(), dw.data(), db.data(), G.data(), x.data(), w.data(), M, K, N);
  for (size_t i = 0; i < dx.size(); i++) dx[i] -= dx0[i];
  for (size_t i = 0; i < dw.size(); i++) dw[i] -= dw0[i];
  for (size_t i = 0; i < db.size(); i++) db[i] -= db0[i];
  check_grad("matmul dx", dx, gx);
  check_grad("matmul dw", dw, gw);
  check_grad("matmul dbias", db, gb);
  // null dw / dbias are skipped
  vector<float> dx2(x.size(), 0.0f);
  cpu::matmul_backward(dx2.data(), nullptr, nullptr, G.data(), x.data(), w.data(), M, K, N);
  check_grad("matmul dx only", dx2, gx);
}

TEST_CASE(matmul_nf4_backward_finite_differences) {
  // The forward is linear in bf16(x); treating that rounding as identity, d/dx = dout . W_bf16. The op rounds dout
  // to bf16 (spec §3 backward), so agreement is at bf16 level (rtol 1e-2 per element).
  const int M = 2, K = 70, N = 9;
  const auto wf = randn(size_t(N) * K, 0.1f, 1);
  const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
  const auto wb = to_d(nf4_weights_bf16(w));
  const auto G = randu(size_t(M) * N, -1, 1, 2);
  auto xd = to_d(randu(size_t(M) * K, -1, 1, 3));
  vector<double> out;
  auto loss = [&] {
    ref_matmul(out, nullptr, xd, wb, nullptr, M, K, N);
    return dot_loss(out, G);
  };
  const auto gx = numeric_grad(xd, loss);
  vector<float> dx(size_t(M) * K, 0.0f);
  cpu::matmul_nf4_backward_input(dx.data(), G.data(), w, M);
  check_grad("nf4 dx", dx, gx, 1e-2, 1e-3);
}

TEST_CASE(rmsnorm_backward_finite_differences) {
  const int M = 3, C = 21;
  const float eps = 1e-5f;
  const auto x = randu(size_t(M) * C, -2, 2, 1), w = randu(C, 0.5, 1.5, 2), G = randu(size_t(M) * C, -1, 1, 3);
  auto xd = to_d(x), wd = to_d(w);
  vector<double> out;
  auto loss = [&] {
    ref_rmsnorm(out, xd, wd, M, C, double(eps));
    return dot_loss(out, G);
  };
  const auto gx = numeric_grad(xd, loss), gw = numeric_grad(wd, loss);
  vector<float> y(x.size()), rstd(M);
  cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), M, C, eps);
  const auto dx0 = randu(x.size(), -1, 1, 4), dw0 = randu(w.size(), -1, 1, 5);
  auto dx = dx0, dw = dw0;
  cpu::rmsnorm_backward(dx.data(), dw.data(), G.data(), x.data(), w.data(), rstd.data(), M, C);
  for (size_t i = 0; i < dx.size(); i++) dx[i] -= dx0[i];
  for (size_t i = 0; i < dw.size(); i++) dw[i] -= dw0[i];
  check_grad("rmsnorm dx", dx, gx);
  check_grad("rmsnorm dw", dw, gw);
}

TEST_CASE(rope_backward_finite_differences) {
  const int M = 3, H = 2, HD = 8;
  const vector<int> pos = {0, 5, 1234};
  const float theta = 10000.0f;
  const auto x = randu(size_t(M) * H * HD, -1, 1, 1), G = randu(x.size(), -1, 1, 2);
  auto xd = to_d(x);
  auto loss = [&] {
    vector<double> y = xd;
    ref_rope(y, pos, M, H, HD, theta);
    return dot_loss(y, G);
  };
  const auto gx = numeric_grad(xd, loss);
  vector<float> d = G;
  const dpo::RopeTable t = dpo::default_rope_table(HD, theta);
  cpu::rope_backward(d.data(), pos.data(), M, H, HD, t.inv_freq.data(), 1.0f);
  check_grad("rope dx", d, gx);
}

TEST_CASE(attention_backward_finite_differences) {
  struct Case {
    AttnShape s;
    bool mask;
    int qoff;
  };
  const Case cases[] = {{{2, 3, 5, 4, 2, 8}, true, 2}, {{1, 4, 4, 8, 4, 8}, false, 0}, {{2, 2, 6, 2, 1, 5}, true, 4}};
  uint32_t seed = 900;
  for (const auto& c : cases) {
    const AttnShape& a = c.s;
    const auto q = randu(size_t(a.B) * a.T * a.NH * a.HD, -1, 1, seed++);
    const auto k = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, seed++);
    const auto v = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, seed++);
    const auto G = randu(q.size(), -1, 1, seed++);
    vector<int> qpos(size_t(a.B) * a.T);
    for (int b = 0; b < a.B; b++)
      for (int t = 0; t < a.T; t++) qpos[size_t(b) * a.T + t] = c.qoff + t;
    vector<uint8_t> valid(size_t(a.B) * a.S, 1);
    if (c.mask) valid[1] = valid[size_t(a.S) + 2] = 0;
    const uint8_t* vp = c.mask ? valid.data() : nullptr;
    auto qd = to_d(q), kd = to_d(k), vd = to_d(v);
    vector<double> out;
    auto loss = [&] {
      ref_attention(out, qd, kd, vd, qpos, vp, a);
      return dot_loss(out, G);
    };
    const auto gq = numeric_grad(qd, loss), gk = numeric_grad(kd, loss), gv = numeric_grad(vd, loss);
    vector<float> o(q.size()), probs(size_t(a.B) * a.NH * a.T * a.S);
    cpu::attention_forward(o.data(), probs.data(), q.data(), k.data(), v.data(), qpos.data(), vp, a.B, a.T, a.S,
                           a.NH, a.NKV, a.HD);
    const auto dq0 = randu(q.size(), -1, 1, seed++), dk0 = randu(k.size(), -1, 1, seed++);
    const auto dv0 = randu(v.size(), -1, 1, seed++);
    auto dq = dq0, dk = dk0, dv = dv0;
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), G.data(), probs.data(), q.data(), k.data(), v.data(),
                            a.B, a.T, a.S, a.NH, a.NKV, a.HD);
    for (size_t i = 0; i < dq.size(); i++) dq[i] -= dq0[i];
    for (size_t i = 0; i < dk.size(); i++) dk[i] -= dk0[i];
    for (size_t i = 0; i < dv.size(); i++) dv[i] -= dv0[i];
    check_grad("attention dq", dq, gq);
    check_grad("attention dk", dk, gk);
    check_grad("attention dv", dv, gv);
  }
}

TEST_CASE(swiglu_backward_finite_differences) {
  const int M = 2, F = 37;
  const auto g = randu(size_t(M) * F, -5, 5, 1), u = randu(g.size(), -2, 2, 2), G = randu(g.size(), -1, 1, 3);
  auto gd = to_d(g), ud = to_d(u);
  auto loss = [&] {
    double s = 0;
    for (size_t i = 0; i < gd.size(); i++) s += gd[i] / (1 + std::exp(-gd[i])) * ud[i] * G[i];
    return s;
  };
  const auto ng = numeric_grad(gd, loss), nu = numeric_grad(ud, loss);
  const auto dg0 = randu(g.size(), -1, 1, 4), du0 = randu(g.size(), -1, 1, 5);
  auto dg = dg0, du = du0;
  cpu::swiglu_backward(dg.data(), du.data(), G.data(), g.data(), u.data(), M, F);
  for (size_t i = 0; i < dg.size(); i++) dg[i] -= dg0[i], du[i] -= du0[i];
  check_grad("swiglu dgate", dg, ng);
  check_grad("swiglu dup", du, nu);
}

TEST_CASE(logsoftmax_gather_backward_finite_differences) {
  const int M = 3, V = 40;
  const auto logits = randu(size_t(M) * V, -4, 4, 1), dlogp = randu(M, -1, 1, 2);
  const vector<int> target = {3, -1, 39};
  auto xd = to_d(logits);
  auto loss = [&] {
    double s = 0;
    for (int m = 0; m < M; m++) {
      if (target[size_t(m)] < 0) continue;
      double mx = -INFINITY, z = 0;
      for (int v = 0; v < V; v++) mx = std::max(mx, xd[size_t(m) * V + v]);
      for (int v = 0; v < V; v++) z += std::exp(xd[size_t(m) * V + v] - mx);
      s += dlogp[size_t(m)] * (xd[size_t(m) * V + target[size_t(m)]] - mx - std::log(z));
    }
    return s;
  };
  const auto gx = numeric_grad(xd, loss);
  vector<float> logp(M), lse(M), d(logits.size(), 123.0f);  // overwritten, not accumulated
  cpu::logsoftmax_gather_forward(logp.data(), lse.data(), logits.data(), target.data(), M, V);
  cpu::logsoftmax_gather_backward(d.data(), dlogp.data(), logits.data(), lse.data(), target.data(), M, V);
  check_grad("logsoftmax dlogits", d, gx);
}

// ================================ batch and thread invariance (bit-exact) ================================

TEST_CASE(matmul_rows_are_batch_and_thread_invariant) {
  const int M = 7;
  const int shapes[][2] = {{172, 1000}, {1024, 96}, {64, 64}, {13, 5}};
  uint32_t seed = 1000;
  for (auto& s : shapes) {
    const int K = s[0], N = s[1];
    const auto x = randu(size_t(M) * K, -1, 1, seed++), w = randu(size_t(N) * K, -1, 1, seed++);
    const auto bias = randu(N, -1, 1, seed++);
    const auto wf = randn(size_t(N) * K, 0.05f, seed++);
    const Nf4Matrix wq = nf4_quantize(wf.data(), N, K);
    vector<float> ref_mm, ref_nf4;
    for (int threads : {1, 2, 4}) {
      set_cpu_thread_count(threads);
      vector<float> mm(size_t(M) * N), nf(size_t(M) * N), one(N);
      cpu::matmul_forward(mm.data(), x.data(), w.data(), bias.data(), M, K, N);
      cpu::matmul_nf4_forward(nf.data(), x.data(), wq, bias.data(), M);
      for (int m = 0; m < M; m++) {
        cpu::matmul_forward(one.data(), x.data() + size_t(m) * K, w.data(), bias.data(), 1, K, N);
        CHECK(same_bits(one.data(), mm.data() + size_t(m) * N, N));
        cpu::matmul_nf4_forward(one.data(), x.data() + size_t(m) * K, wq, bias.data(), 1);
        CHECK(same_bits(one.data(), nf.data() + size_t(m) * N, N));
      }
      // a batch of 3 rows taken from the middle gives the same rows again
      vector<float> three(size_t(3) * N);
      cpu::matmul_nf4_forward(three.data(), x.data() + size_t(2) * K, wq, bias.data(), 3);
      CHECK(same_bits(three.data(), nf.data() + size_t(2) * N, size_t(3) * N));
      if (ref_mm.empty()) ref_mm = mm, ref_nf4 = nf;
      CHECK(same_bits(mm.data(), ref_mm.data(), mm.size()));
      CHECK(same_bits(nf.data(), ref_nf4.data(), nf.size()));
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(attention_rows_are_batch_and_thread_invariant) {
  // 7 sequences of different lengths, left-padded into one batch (S = 9), against each sequence alone, and a
  // whole prefill against one-token decode steps against the cache.
  const int B = 7, S = 9, NH = 8, NKV = 4, HD = 8, C = NH * HD, CK = NKV * HD;
  const auto qall = randu(size_t(B) * S * C, -1, 1, 1), kall = randu(size_t(B) * S * CK, -1, 1, 2);
  const auto vall = randu(size_t(B) * S * CK, -1, 1, 3);
  vector<uint8_t> valid(size_t(B) * S, 1);
  vector<int> qpos(size_t(B) * S);
  vector<int> len(B);
  for (int b = 0; b < B; b++) {
    len[size_t(b)] = S - b % 4;  // pad = b % 4 keys on the left
    for (int s = 0; s < S - len[size_t(b)]; s++) valid[size_t(b) * S + s] = 0;
    for (int t = 0; t < S; t++) qpos[size_t(b) * S + t] = t;
  }
  vector<float> ref;
  for (int threads : {1, 2, 4}) {
    set_cpu_thread_count(threads);
    vector<float> out(qall.size());
    cpu::attention_forward(out.data(), nullptr, qall.data(), kall.data(), vall.data(), qpos.data(), valid.data(), B,
                           S, S, NH, NKV, HD);
    if (ref.empty()) ref = out;
    CHECK(same_bits(out.data(), ref.data(), out.size()));
    for (int b = 0; b < B; b++) {
      const int pad = S - len[size_t(b)], L = len[size_t(b)];
      // alone, unpadded: positions shift down by pad
      const float* q = qall.data() + (size_t(b) * S + pad) * C;
      const float* k = kall.data() + (size_t(b) * S + pad) * CK;
      const float* v = vall.data() + (size_t(b) * S + pad) * CK;
      vector<int> pos1(static_cast<size_t>(L));
      for (int t = 0; t < L; t++) pos1[size_t(t)] = t;
      vector<float> alone(size_t(L) * C);
      cpu::attention_forward(alone.data(), nullptr, q, k, v, pos1.data(), nullptr, 1, L, L, NH, NKV, HD);
      CHECK(same_bits(alone.data(), out.data() + (size_t(b) * S + pad) * C, size_t(L) * C));
      // decode: one query at a time against the full cache
      for (int t = 0; t < L; t++) {
        vector<float> one(C);
        cpu::attention_forward(one.data(), nullptr, q + size_t(t) * C, k, v, &t, nullptr, 1, 1, L, NH, NKV, HD);
        CHECK(same_bits(one.data(), alone.data() + size_t(t) * C, C));
      }
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(backward_ops_are_thread_invariant) {
  const int M = 9, K = 172, N = 130;
  const auto x = randu(size_t(M) * K, -1, 1, 1), w = randu(size_t(N) * K, -1, 1, 2), G = randu(size_t(M) * N, -1, 1, 3);
  const auto wf = randn(size_t(N) * K, 0.05f, 4);
  const Nf4Matrix wq = nf4_quantize(wf.data(), N, K);
  const AttnShape a{2, 6, 6, 8, 4, 8};
  const auto q = randu(size_t(a.B) * a.T * a.NH * a.HD, -1, 1, 5), k = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, 6);
  const auto v = randu(k.size(), -1, 1, 7), Ga = randu(q.size(), -1, 1, 8);
  vector<int> qpos(size_t(a.B) * a.T);
  for (size_t i = 0; i < qpos.size(); i++) qpos[i] = int(i % size_t(a.T));
  vector<vector<float>> first;
  for (int threads : {1, 2, 4}) {
    set_cpu_thread_count(threads);
    vector<float> dx(x.size(), 0.0f), dw(w.size(), 0.0f), db(N, 0.0f), dxq(x.size(), 0.0f);
    cpu::matmul_backward(dx.data(), dw.data(), db.data(), G.data(), x.data(), w.data(), M, K, N);
    cpu::matmul_nf4_backward_input(dxq.data(), G.data(), wq, M);
    vector<float> o(q.size()), p(size_t(a.B) * a.NH * a.T * a.S), dq(q.size(), 0.0f), dk(k.size(), 0.0f),
        dv(v.size(), 0.0f);
    cpu::attention_forward(o.data(), p.data(), q.data(), k.data(), v.data(), qpos.data(), nullptr, a.B, a.T, a.S,
                           a.NH, a.NKV, a.HD);
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), Ga.data(), p.data(), q.data(), k.data(), v.data(), a.B,
                            a.T, a.S, a.NH, a.NKV, a.HD);
    vector<vector<float>> all = {dx, dw, db, dxq, o, p, dq, dk, dv};
    if (first.empty()) first = all;
    for (size_t i = 0; i < all.size(); i++) CHECK(same_bits(all[i].data(), first[i].data(), all[i].size()));
  }
  set_cpu_thread_count(0);
}

TEST_MAIN()
