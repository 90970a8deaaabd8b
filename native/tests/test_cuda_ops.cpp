// CUDA decoder ops other than the matrix products (src/cuda/ops_misc.cuh) against the CPU reference ops
// (src/cpu/ops.h), test-backend-ops style: random inputs with odd sizes, the CPU op, the CUDA launcher on device
// buffers, a tolerance comparison, and on the GPU: two runs give the same bits, and a row computed alone gives the
// same bits as inside a batch. Without a GPU (no driver: cudaGetDeviceCount error 35) every GPU case prints
// "skipped: no GPU (<reason>)" and passes; the argument checks and the launch-error path still run.
//
// Tolerances: |gpu - cpu| <= rtol |cpu| + atol, atol = rtol * rms(cpu) (the rms absorbs entries that are small
// through cancellation). rtol 1e-5 unless noted: the GPU sums in other fixed orders (warp butterflies, strided
// per-thread partials) than the CPU's 16-lane loops, and CUDA's expf is within 2 ulp where glibc's is within 1, so
// a few ulps of difference are expected; 1e-5 is ~100 ulps of headroom.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "random_data.h"
#include "cpu/ops.h"
#include "dpo/errors.h"
#include "model/rope_table.h"

#ifdef DPO_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_probe.h"
#include "cuda/ops_misc.cuh"
#endif

using namespace dpo;
using std::vector;

namespace {

using dpo_test::randn;
using dpo_test::randu;

[[maybe_unused]] vector<int> randi(size_t n, int lo, int hi, uint32_t seed) {  // [lo, hi]
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  vector<int> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

[[maybe_unused]] bool same_bits(const vector<float>& a, const vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// |got - want| <= rtol |want| + rtol * rms(want), NaN only where want is NaN; reports the worst entries.
[[maybe_unused]] void check_near(const char* what, const vector<float>& got, const vector<float>& want,
                                 double rtol = 1e-5) {
  if (got.size() != want.size()) {
    std::printf("  %s: size %zu vs %zu\n", what, got.size(), want.size());
    dpo_test::failures()++;
    return;
  }
  double ss = 0;
  size_t finite = 0;
  for (float w : want)
    if (std::isfinite(w)) {
      ss += double(w) * w;
      finite++;
    }
  const double atol = rtol * std::sqrt(ss / double(std::max<size_t>(finite, 1))) + 1e-30;
  int bad = 0;
  size_t identical = 0;
  double worst = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double g = got[i], w = want[i];
    if (std::memcmp(&got[i], &want[i], sizeof(float)) == 0) identical++;
    bool ok;
    if (std::isnan(w) || std::isinf(w)) ok = std::isnan(w) ? std::isnan(g) : g == w;
    else ok = std::fabs(g - w) <= rtol * std::fabs(w) + atol;
    if (std::isfinite(w) && std::isfinite(g)) worst = std::max(worst, std::fabs(g - w) / (rtol * std::fabs(w) + atol));
    if (!ok) {
      if (bad < 4) std::printf("  %s[%zu] = %.9g, want %.9g\n", what, i, g, w);
      bad++;
    }
  }
  std::printf("  %s: %zu values, %zu bit-identical, worst error %.3g of the tolerance%s\n", what, want.size(),
              identical, worst, bad ? " <- OUT OF TOLERANCE" : "");
  if (bad) dpo_test::failures()++;
}

#ifdef DPO_WITH_CUDA

const cuda::ProbeResult& gpu_probe() {
  static const cuda::ProbeResult r = cuda::probe();
  return r;
}

// True when a GPU answers; otherwise prints the skip line for this case.
bool have_gpu() {
  if (gpu_probe().available) return true;
  std::printf("  skipped: no GPU (%s)\n", gpu_probe().reason.c_str());
  return false;
}

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e));
}

cudaStream_t test_stream() {
  static cudaStream_t s = [] {
    cudaStream_t st = nullptr;
    ck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate");
    return st;
  }();
  return s;
}

void gpu_sync() {
  ck(cudaStreamSynchronize(test_stream()), "cudaStreamSynchronize");
  ck(cudaGetLastError(), "kernel");
}

// A device copy of a host vector (plain cudaMalloc / cudaMemcpy).
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { ck(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc"); }
  explicit Dev(const vector<T>& h) : Dev(h.size()) { up(h); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void up(const vector<T>& h) {
    if (h.size() != n) throw std::runtime_error("Dev::up: size");
    if (n) ck(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  vector<T> down() const {
    gpu_sync();
    vector<T> h(n);
    if (n) ck(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return h;
  }
};

template <class T>
vector<T> slice(const vector<T>& v, size_t off, size_t n) {
  return vector<T>(v.begin() + std::ptrdiff_t(off), v.begin() + std::ptrdiff_t(off + n));
}

#endif  // DPO_WITH_CUDA

}  // namespace

#ifdef DPO_WITH_CUDA
using namespace dpo::cuda;  // the launchers
#endif

#ifdef DPO_WITH_CUDA

// ---- rmsnorm ----

TEST_CASE(cuda_rmsnorm_forward_matches_cpu) {
  if (!have_gpu()) return;
  struct Shape { int M, C; };
  // {6*16, 128}, {5*8, 64}: Qwen3's per-head q/k norms (rows of one head, C = head_dim).
  for (const Shape sh : {Shape{7, 173}, Shape{3, 4096}, Shape{5, 8}, Shape{6 * 16, 128}, Shape{5 * 8, 64}}) {
    const int M = sh.M, C = sh.C;
    std::printf("  M=%d C=%d\n", M, C);
    const auto x = randn(size_t(M) * C, 1.5f, 11u + C);
    const auto w = randu(size_t(C), 0.5f, 1.5f, 12u + C);
    vector<float> out(x.size()), rstd(static_cast<size_t>(M));
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), M, C, 1e-5f);

    Dev<float> dx(x), dw(w), dout(x.size()), drstd(static_cast<size_t>(M));
    launch_rmsnorm_forward(test_stream(), dout.p, drstd.p, dx.p, dw.p, M, C, 1e-5f);
    const auto g_out = dout.down(), g_rstd = drstd.down();
    check_near("out", g_out, out);
    check_near("rstd", g_rstd, rstd);

    launch_rmsnorm_forward(test_stream(), dout.p, nullptr, dx.p, dw.p, M, C, 1e-5f);  // rstd null
    CHECK(same_bits(dout.down(), g_out));                                             // and deterministic
    // Row m alone (M = 1) gives the batch's bits.
    const int m = M / 2;
    Dev<float> dx1(slice(x, size_t(m) * C, size_t(C))), dout1(static_cast<size_t>(C)), drstd1(1);
    launch_rmsnorm_forward(test_stream(), dout1.p, drstd1.p, dx1.p, dw.p, 1, C, 1e-5f);
    CHECK(same_bits(dout1.down(), slice(g_out, size_t(m) * C, size_t(C))));
    CHECK(same_bits(drstd1.down(), slice(g_rstd, size_t(m), 1)));
    // In place (out aliases x) gives the same bits.
    launch_rmsnorm_forward(test_stream(), dx.p, nullptr, dx.p, dw.p, M, C, 1e-5f);
    CHECK(same_bits(dx.down(), g_out));
  }
}

TEST_CASE(cuda_rmsnorm_backward_matches_cpu) {
  if (!have_gpu()) return;
  struct Shape { int M, C; };
  for (const Shape sh : {Shape{37, 173}, Shape{4, 4096}, Shape{1, 8}, Shape{6 * 16, 128}, Shape{3 * 8, 64}}) {
    const int M = sh.M, C = sh.C;
    std::printf("  M=%d C=%d\n", M, C);
    const auto x = randn(size_t(M) * C, 1.5f, 21u + C);
    const auto w = randu(size_t(C), 0.5f, 1.5f, 22u + C);
    const auto dy = randn(x.size(), 1.0f, 23u + C);
    const auto dx0 = randn(x.size(), 0.1f, 24u + C);
    const auto dw0 = randn(size_t(C), 0.1f, 25u + C);
    vector<float> out(x.size()), rstd(static_cast<size_t>(M));
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), M, C, 1e-5f);
    vector<float> dx = dx0, dw = dw0;
    cpu::rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), M, C);

    Dev<float> gx(x), gw(w), gdy(dy), grstd(rstd), gdx(dx0), gdw(dw0);
    launch_rmsnorm_backward(test_stream(), gdx.p, gdw.p, gdy.p, gx.p, gw.p, grstd.p, M, C);
    const auto r_dx = gdx.down(), r_dw = gdw.down();
    check_near("dx", r_dx, dx);
    check_near("dw", r_dw, dw);  // sums M rows (37) in another order than the CPU: still ulps

    gdx.up(dx0);
    gdw.up(dw0);
    launch_rmsnorm_backward(test_stream(), gdx.p, gdw.p, gdy.p, gx.p, gw.p, grstd.p, M, C);
    CHECK(same_bits(gdx.down(), r_dx));
    CHECK(same_bits(gdw.down(), r_dw));
    gdx.up(dx0);
    launch_rmsnorm_backward(test_stream(), gdx.p, nullptr, gdy.p, gx.p, gw.p, grstd.p, M, C);  // dw null
    CHECK(same_bits(gdx.down(), r_dx));
  }
}

// ---- rope ----

TEST_CASE(cuda_rope_matches_cpu) {
  if (!have_gpu()) return;
  // A scaled table (llama3's smoothed frequencies) and yarn's cos/sin factor ride along with the plain ones.
  dpo::ModelConfig llama3;
  llama3.head_dim = 64;
  llama3.rope_theta = 500000.0f;
  llama3.rope.type = dpo::RopeType::Llama3;
  llama3.rope.factor = 32.0;
  llama3.rope.original_max_position = 8192;
  dpo::RopeTable yarn = dpo::default_rope_table(128, 1e6f);
  yarn.attention_scaling = 1.1386294f;
  struct Shape { int M, H, HD; float theta; dpo::RopeTable table; };
  for (const Shape& sh : {Shape{9, 3, 8, 10000.0f, dpo::default_rope_table(8, 10000.0f)},
                          Shape{5, 4, 128, 1e6f, dpo::default_rope_table(128, 1e6f)},
                          Shape{3, 2, 80, 10000.0f, dpo::default_rope_table(80, 10000.0f)},
                          Shape{7, 2, 64, 500000.0f, dpo::rope_table(llama3, 1)}, Shape{4, 3, 128, 1e6f, yarn}}) {
    const int M = sh.M, H = sh.H, HD = sh.HD;
    const dpo::RopeTable& t = sh.table;
    std::printf("  M=%d H=%d HD=%d theta=%g scaling=%g\n", M, H, HD, double(sh.theta), double(t.attention_scaling));
    const auto x = randn(size_t(M) * H * HD, 1.0f, 31u + HD);
    vector<int> pos = randi(size_t(M), 0, 32767, 32u + HD);
    pos[0] = 0;
    if (M > 1) pos[1] = 1;
    Dev<int> gpos(pos);
    for (const bool bwd : {false, true}) {
      vector<float> ref = x;
      if (bwd) cpu::rope_backward(ref.data(), pos.data(), M, H, HD, t.inv_freq.data(), t.attention_scaling);
      else cpu::rope_forward(ref.data(), pos.data(), M, H, HD, t.inv_freq.data(), t.attention_scaling);
      Dev<float> gx(x);
      if (bwd) launch_rope_backward(test_stream(), gx.p, gpos.p, M, H, HD, t);
      else launch_rope_forward(test_stream(), gx.p, gpos.p, M, H, HD, t);
      const auto got = gx.down();
      check_near(bwd ? "rope_backward" : "rope_forward", got, ref, 1e-6);  // same inv_freq, angle and rounding
      if (!bwd) {
        // Same inv_freq bits, the same fp32 angle, cos/sin in double rounded once, products rounded alone: the
        // forward is the CPU's bits except where CUDA's double sincos (2 ulp) and glibc's straddle an fp32
        // rounding boundary (~1e-8 per value).
        size_t same = 0;
        for (size_t i = 0; i < got.size(); i++) same += std::memcmp(&got[i], &ref[i], sizeof(float)) == 0;
        CHECK(same * 100 >= got.size() * 99);
      }
      gx.up(x);
      if (bwd) launch_rope_backward(test_stream(), gx.p, gpos.p, M, H, HD, t);
      else launch_rope_forward(test_stream(), gx.p, gpos.p, M, H, HD, t);
      CHECK(same_bits(gx.down(), got));
    }
  }
}

// ---- attention ----

namespace {

struct AttnCase {
  const char* name;
  int B, T, S, NH, NKV, HD;
  bool masked;  // use key_valid
};

struct AttnData {
  vector<float> q, k, v;
  vector<int> qpos;
  vector<uint8_t> valid;
};

// Random q/k/v; keys the case never attends (past every qpos, or invalid) hold NaN so any read of them shows.
AttnData make_attn(const AttnCase& c, uint32_t seed) {
  AttnData d;
  d.q = randn(size_t(c.B) * c.T * c.NH * c.HD, 1.0f, seed);
  d.k = randn(size_t(c.B) * c.S * c.NKV * c.HD, 1.0f, seed + 1);
  d.v = randn(d.k.size(), 1.0f, seed + 2);
  d.qpos.resize(size_t(c.B) * c.T);
  d.valid.assign(size_t(c.B) * c.S, 1);
  for (int b = 0; b < c.B; b++) {
    // Sequence b's queries sit at the end of its first S - 3b positions (decode-like offsets), clamped at 0.
    const int end = std::max(c.S - 3 * b, c.T);
    for (int t = 0; t < c.T; t++) d.qpos[size_t(b) * c.T + t] = end - c.T + t;
    if (c.masked)
      for (int s = 0; s < std::min(2 * b, c.S); s++) d.valid[size_t(b) * c.S + s] = 0;  // left padding of 2b keys
  }
  if (c.masked && c.B > 0 && c.S > 4) d.valid[size_t(c.B - 1) * c.S + size_t(c.S / 2)] = 0;  // a hole in the middle
  if (c.masked && c.B > 1 && c.T > 0) d.qpos[size_t(c.T)] = 1;  // (b=1, t=0) sees only padded keys: zeros
  if (c.B > 0 && c.T > 1) d.qpos[1] = -1;                        // (b=0, t=1): no key at all: zeros
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int b = 0; b < c.B; b++) {
    int maxpos = -1;
    for (int t = 0; t < c.T; t++) maxpos = std::max(maxpos, d.qpos[size_t(b) * c.T + t]);
    for (int s = 0; s < c.S; s++) {
      if (s <= maxpos && d.valid[size_t(b) * c.S + s]) continue;
      for (int i = 0; i < c.NKV * c.HD; i++) {
        d.k[(size_t(b) * c.S + s) * c.NKV * c.HD + i] = nan;
        d.v[(size_t(b) * c.S + s) * c.NKV * c.HD + i] = nan;
      }
    }
  }
  return d;
}

const AttnCase kAttnCases[] = {
    {"prefill HD=8 GQA 8/4 padded", 3, 6, 6, 8, 4, 8, true},
    {"cached HD=128 GQA 8/4 masked", 2, 5, 21, 8, 4, 128, true},
    {"decode HD=128 GQA 8/2", 3, 1, 40, 8, 2, 128, false},
    {"HD=80 MHA", 2, 4, 9, 3, 3, 80, true},
    {"HD=256 MQA", 1, 3, 7, 2, 1, 256, false},
};

}  // namespace

TEST_CASE(cuda_attention_forward_matches_cpu) {
  if (!have_gpu()) return;
  for (const AttnCase& c : kAttnCases) {
    std::printf("  %s: B=%d T=%d S=%d NH=%d NKV=%d HD=%d\n", c.name, c.B, c.T, c.S, c.NH, c.NKV, c.HD);
    const AttnData d = make_attn(c, 41u + c.HD);
    const uint8_t* valid = c.masked ? d.valid.data() : nullptr;
    const size_t n_out = d.q.size(), n_probs = size_t(c.B) * c.NH * c.T * c.S;
    vector<float> out(n_out), probs(n_probs);
    cpu::attention_forward(out.data(), probs.data(), d.q.data(), d.k.data(), d.v.data(), d.qpos.data(), valid, c.B,
                           c.T, c.S, c.NH, c.NKV, c.HD);

    Dev<float> gq(d.q), gk(d.k), gv(d.v), gout(n_out), gprobs(n_probs);
    Dev<int> gqpos(d.qpos);
    Dev<uint8_t> gvalid(d.valid);
    const uint8_t* gval = c.masked ? gvalid.p : nullptr;
    launch_attention_forward(test_stream(), gout.p, gprobs.p, gq.p, gk.p, gv.p, gqpos.p, gval, c.B, c.T, c.S, c.NH,
                             c.NKV, c.HD);
    const auto r_out = gout.down(), r_probs = gprobs.down();
    check_near("out", r_out, out);
    check_near("probs", r_probs, probs);

    // Deterministic, and probs == null gives the same out.
    launch_attention_forward(test_stream(), gout.p, nullptr, gq.p, gk.p, gv.p, gqpos.p, gval, c.B, c.T, c.S, c.NH,
                             c.NKV, c.HD);
    CHECK(same_bits(gout.down(), r_out));
    // The last sequence alone (B = 1) gives the batch's bits.
    const int b = c.B - 1;
    const size_t qrow = size_t(c.T) * c.NH * c.HD, krow = size_t(c.S) * c.NKV * c.HD;
    Dev<float> q1(slice(d.q, b * qrow, qrow)), k1(slice(d.k, b * krow, krow)), v1(slice(d.v, b * krow, krow));
    Dev<float> o1(qrow);
    Dev<int> p1(slice(d.qpos, size_t(b) * c.T, size_t(c.T)));
    Dev<uint8_t> val1(slice(d.valid, size_t(b) * c.S, size_t(c.S)));
    launch_attention_forward(test_stream(), o1.p, nullptr, q1.p, k1.p, v1.p, p1.p, c.masked ? val1.p : nullptr, 1,
                             c.T, c.S, c.NH, c.NKV, c.HD);
    CHECK(same_bits(o1.down(), slice(r_out, b * qrow, qrow)));
    // One query at a time (T = 1, as cached decode) gives the batch's bits too.
    for (int t = 0; t < c.T; t++) {
      const size_t one = size_t(c.NH) * c.HD;
      Dev<float> qt(slice(d.q, b * qrow + size_t(t) * one, one)), ot(one);
      Dev<int> pt(slice(d.qpos, size_t(b) * c.T + t, 1));
      launch_attention_forward(test_stream(), ot.p, nullptr, qt.p, k1.p, v1.p, pt.p, c.masked ? val1.p : nullptr, 1,
                               1, c.S, c.NH, c.NKV, c.HD);
      CHECK(same_bits(ot.down(), slice(r_out, b * qrow + size_t(t) * one, one)));
    }
  }
}

TEST_CASE(cuda_attention_forward_longer_store_same_bits) {
  if (!have_gpu()) return;
  // A store with more (never attended) slots past qpos gives the same bits: decode into a preallocated cache.
  const AttnCase c{"decode", 1, 2, 30, 8, 4, 128, false};
  const AttnData d = make_attn(c, 77u);
  const int S2 = 45;
  vector<float> k2(d.k), v2(d.v);
  k2.resize(size_t(S2) * c.NKV * c.HD, std::numeric_limits<float>::quiet_NaN());
  v2.resize(k2.size(), std::numeric_limits<float>::quiet_NaN());
  Dev<float> gq(d.q), gk(d.k), gv(d.v), gk2(k2), gv2(v2), o(d.q.size()), o2(d.q.size());
  Dev<int> gp(d.qpos);
  launch_attention_forward(test_stream(), o.p, nullptr, gq.p, gk.p, gv.p, gp.p, nullptr, 1, c.T, c.S, c.NH, c.NKV,
                           c.HD);
  launch_attention_forward(test_stream(), o2.p, nullptr, gq.p, gk2.p, gv2.p, gp.p, nullptr, 1, c.T, S2, c.NH, c.NKV,
                           c.HD);
  const auto a = o.down(), b = o2.down();
  CHECK(same_bits(a, b));
  CHECK(std::all_of(a.begin(), a.end(), [](float x) { return std::isfinite(x); }));
}

TEST_CASE(cuda_attention_backward_matches_cpu) {
  if (!have_gpu()) return;
  for (const AttnCase& c : kAttnCases) {
    std::printf("  %s: B=%d T=%d S=%d NH=%d NKV=%d HD=%d\n", c.name, c.B, c.T, c.S, c.NH, c.NKV, c.HD);
    const AttnData d = make_attn(c, 51u + c.HD);
    const uint8_t* valid = c.masked ? d.valid.data() : nullptr;
    const size_t n_out = d.q.size(), n_probs = size_t(c.B) * c.NH * c.T * c.S;
    vector<float> out(n_out), probs(n_probs);
    cpu::attention_forward(out.data(), probs.data(), d.q.data(), d.k.data(), d.v.data(), d.qpos.data(), valid, c.B,
                           c.T, c.S, c.NH, c.NKV, c.HD);
    const auto dout = randn(n_out, 1.0f, 52u + c.HD);
    // Accumulate into small nonzero gradients; the NaN slots of k/v get finite dk/dv starts that must stay as they are.
    const auto dq0 = randn(n_out, 0.05f, 53u + c.HD);
    const auto dk0 = randn(d.k.size(), 0.05f, 54u + c.HD), dv0 = randn(d.k.size(), 0.05f, 55u + c.HD);
    vector<float> dq = dq0, dk = dk0, dv = dv0;
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), d.q.data(), d.k.data(),
                            d.v.data(), c.B, c.T, c.S, c.NH, c.NKV, c.HD);

    // The GPU gets the CPU's probs, so both backward passes see the same inputs.
    Dev<float> gq(d.q), gk(d.k), gv(d.v), gprobs(probs), gdout(dout), gdq(dq0), gdk(dk0), gdv(dv0);
    launch_attention_backward(test_stream(), gdq.p, gdk.p, gdv.p, gdout.p, gprobs.p, gq.p, gk.p, gv.p, c.B, c.T, c.S,
                              c.NH, c.NKV, c.HD);
    const auto r_dq = gdq.down(), r_dk = gdk.down(), r_dv = gdv.down();
    // ds = p (dp - D) subtracts two sums computed in different orders; rms-scaled atol covers the cancellation.
    check_near("dq", r_dq, dq, 2e-5);
    check_near("dk", r_dk, dk, 2e-5);
    check_near("dv", r_dv, dv);

    // Deterministic; and dq alone (no scratch path), dk alone, dv alone give the same bits.
    gdq.up(dq0);
    gdk.up(dk0);
    gdv.up(dv0);
    launch_attention_backward(test_stream(), gdq.p, gdk.p, gdv.p, gdout.p, gprobs.p, gq.p, gk.p, gv.p, c.B, c.T, c.S,
                              c.NH, c.NKV, c.HD);
    CHECK(same_bits(gdq.down(), r_dq));
    CHECK(same_bits(gdk.down(), r_dk));
    CHECK(same_bits(gdv.down(), r_dv));
    gdq.up(dq0);
    launch_attention_backward(test_stream(), gdq.p, nullptr, nullptr, gdout.p, gprobs.p, gq.p, gk.p, gv.p, c.B, c.T,
                              c.S, c.NH, c.NKV, c.HD);
    CHECK(same_bits(gdq.down(), r_dq));
    gdk.up(dk0);
    launch_attention_backward(test_stream(), nullptr, gdk.p, nullptr, gdout.p, gprobs.p, gq.p, gk.p, gv.p, c.B, c.T,
                              c.S, c.NH, c.NKV, c.HD);
    CHECK(same_bits(gdk.down(), r_dk));
    gdv.up(dv0);
    launch_attention_backward(test_stream(), nullptr, nullptr, gdv.p, gdout.p, gprobs.p, gq.p, gk.p, gv.p, c.B, c.T,
                              c.S, c.NH, c.NKV, c.HD);
    CHECK(same_bits(gdv.down(), r_dv));
  }
}

// The row kernels' dynamic shared memory is (HD + S + 256) floats; with HD = 128 and S = 11904 that is exactly
// 48 KiB, and the kernels' static __shared__ scratch comes on top: the launcher must opt in above 48 KiB in total,
// not only when the dynamic part alone exceeds it (else the launch fails with cudaErrorInvalidValue).
TEST_CASE(cuda_attention_smem_at_48k_boundary) {
  if (!have_gpu()) return;
  for (const int S : {11904, 11905, 12300}) {
    const AttnCase c{"smem boundary", 1, 2, S, 2, 1, 128, false};
    std::printf("  B=%d T=%d S=%d NH=%d NKV=%d HD=%d\n", c.B, c.T, c.S, c.NH, c.NKV, c.HD);
    const AttnData d = make_attn(c, 97u + S);
    const size_t n_out = d.q.size(), n_probs = size_t(c.B) * c.NH * c.T * c.S;
    vector<float> out(n_out), probs(n_probs);
    cpu::attention_forward(out.data(), probs.data(), d.q.data(), d.k.data(), d.v.data(), d.qpos.data(), nullptr, c.B,
                           c.T, c.S, c.NH, c.NKV, c.HD);
    Dev<float> gq(d.q), gk(d.k), gv(d.v), gout(n_out), gprobs(n_probs);
    Dev<int> gqpos(d.qpos);
    launch_attention_forward(test_stream(), gout.p, gprobs.p, gq.p, gk.p, gv.p, gqpos.p, nullptr, c.B, c.T, c.S, c.NH,
                             c.NKV, c.HD);
    check_near("out", gout.down(), out);
    check_near("probs", gprobs.down(), probs);

    const auto dout = randn(n_out, 1.0f, 98u + S);
    vector<float> dq(n_out, 0.0f), dk(d.k.size(), 0.0f), dv(d.k.size(), 0.0f);
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), d.q.data(), d.k.data(),
                            d.v.data(), c.B, c.T, c.S, c.NH, c.NKV, c.HD);
    Dev<float> gcpu_probs(probs), gdout(dout), gdq(vector<float>(n_out, 0.0f)), gdk(vector<float>(dk.size(), 0.0f)),
        gdv(vector<float>(dv.size(), 0.0f));
    launch_attention_backward(test_stream(), gdq.p, gdk.p, gdv.p, gdout.p, gcpu_probs.p, gq.p, gk.p, gv.p, c.B, c.T,
                              c.S, c.NH, c.NKV, c.HD);
    check_near("dq", gdq.down(), dq, 2e-5);
    check_near("dk", gdk.down(), dk, 2e-5);
    check_near("dv", gdv.down(), dv);
  }
}

// ---- elementwise ----

TEST_CASE(cuda_swiglu_matches_cpu) {
  if (!have_gpu()) return;
  const int M = 3, F = 172;
  const size_t n = size_t(M) * F;
  auto gate = randn(n, 3.0f, 61u);
  gate[0] = 30.0f;
  gate[1] = -30.0f;
  gate[2] = -100.0f;  // exp(100) overflows: silu -> -0
  gate[3] = 0.0f;
  const auto up = randn(n, 1.0f, 62u), dout = randn(n, 1.0f, 63u);
  const auto dg0 = randn(n, 0.1f, 64u), du0 = randn(n, 0.1f, 65u);
  vector<float> out(n), dg = dg0, du = du0;
  cpu::swiglu_forward(out.data(), gate.data(), up.data(), M, F);
  cpu::swiglu_backward(dg.data(), du.data(), dout.data(), gate.data(), up.data(), M, F);

  Dev<float> ggate(gate), gup(up), gdout(dout), gout(n), gdg(dg0), gdu(du0);
  launch_swiglu_forward(test_stream(), gout.p, ggate.p, gup.p, M, F);
  const auto r_out = gout.down();
  check_near("swiglu out", r_out, out);
  launch_swiglu_backward(test_stream(), gdg.p, gdu.p, gdout.p, ggate.p, gup.p, M, F);
  const auto r_dg = gdg.down(), r_du = gdu.down();
  check_near("dgate", r_dg, dg);
  check_near("dup", r_du, du);

  launch_swiglu_forward(test_stream(), gout.p, ggate.p, gup.p, M, F);
  CHECK(same_bits(gout.down(), r_out));
  gdg.up(dg0);
  launch_swiglu_backward(test_stream(), gdg.p, nullptr, gdout.p, ggate.p, gup.p, M, F);
  CHECK(same_bits(gdg.down(), r_dg));
  gdu.up(du0);
  launch_swiglu_backward(test_stream(), nullptr, gdu.p, gdout.p, ggate.p, gup.p, M, F);
  CHECK(same_bits(gdu.down(), r_du));
}

TEST_CASE(cuda_embedding_and_add_match_cpu) {
  if (!have_gpu()) return;
  {
    const int V = 61, C = 173, M = 9;
    const auto table = randn(size_t(V) * C, 1.0f, 71u);
    vector<int> ids = randi(size_t(M), 0, V - 1, 72u);
    ids[0] = 0;
    ids[1] = V - 1;
    vector<float> out(size_t(M) * C);
    cpu::embedding_forward(out.data(), ids.data(), table.data(), M, C);
    Dev<float> gt(table), gout(out.size());
    Dev<int> gids(ids);
    launch_embedding_forward(test_stream(), gout.p, gids.p, gt.p, M, C);
    CHECK(same_bits(gout.down(), out));  // a copy
    // A negative id (the CPU throws) gives a zero row on the GPU rather than an out-of-bounds read.
    ids[2] = -5;
    gids.up(ids);
    launch_embedding_forward(test_stream(), gout.p, gids.p, gt.p, M, C);
    const auto z = gout.down();
    CHECK(std::all_of(z.begin() + 2 * C, z.begin() + 3 * C, [](float x) { return x == 0.0f; }));
  }
  {
    const int64_t n = 100003;
    const auto a = randn(size_t(n), 1.0f, 73u), b = randn(size_t(n), 1.0f, 74u);
    vector<float> out(static_cast<size_t>(n));
    cpu::add_forward(out.data(), a.data(), b.data(), n);
    Dev<float> ga(a), gb(b), gout(static_cast<size_t>(n));
    launch_add_forward(test_stream(), gout.p, ga.p, gb.p, n);
    CHECK(same_bits(gout.down(), out));  // one IEEE add per element
    launch_add_forward(test_stream(), ga.p, ga.p, gb.p, n);  // out aliases a (the residual add)
    CHECK(same_bits(ga.down(), out));
  }
}

// ---- logits ----

TEST_CASE(cuda_logsoftmax_gather_matches_cpu) {
  if (!have_gpu()) return;
  struct Shape { int M, V; };
  for (const Shape sh : {Shape{5, 61}, Shape{6, 1000}, Shape{3, 61952}}) {
    const int M = sh.M, V = sh.V;
    std::printf("  M=%d V=%d\n", M, V);
    auto logits = randn(size_t(M) * V, 3.0f, 81u + V);
    for (int v = 0; v < V; v++) logits[size_t(V) + v] *= 10.0f;  // row 1: a wide spread
    for (int v = 0; v < V; v += 3) logits[size_t(2) * V + v] = -INFINITY;  // row 2: masked vocabulary entries
    vector<int> target = randi(size_t(M), 0, V - 1, 82u + V);
    target[2] = 1;  // a finite entry of row 2
    if (M > 3) target[3] = -1;  // ignored row
    vector<float> logp(static_cast<size_t>(M)), lse(static_cast<size_t>(M));
    cpu::logsoftmax_gather_forward(logp.data(), lse.data(), logits.data(), target.data(), M, V);

    Dev<float> gl(logits), glogp(static_cast<size_t>(M)), glse(static_cast<size_t>(M));
    Dev<int> gt(target);
    launch_logsoftmax_gather_forward(test_stream(), glogp.p, glse.p, gl.p, gt.p, M, V);
    const auto r_logp = glogp.down(), r_lse = glse.down();
    // lse is O(10); the online max/sum rounds differently from the CPU's two passes: absolute 1e-5 (a few ulps).
    for (int m = 0; m < M; m++) {
      CHECK_CLOSE(r_lse[size_t(m)], lse[size_t(m)], 1e-5, 1e-6);
      CHECK_CLOSE(r_logp[size_t(m)], logp[size_t(m)], 1e-5, 1e-6);
    }
    if (M > 3) CHECK(r_logp[3] == 0.0f);
    launch_logsoftmax_gather_forward(test_stream(), glogp.p, nullptr, gl.p, gt.p, M, V);  // lse null
    CHECK(same_bits(glogp.down(), r_logp));
    // Row m alone gives the batch's bits.
    const int m = M - 1;
    Dev<float> gl1(slice(logits, size_t(m) * V, size_t(V))), lp1(1), ls1(1);
    Dev<int> gt1(slice(target, size_t(m), 1));
    launch_logsoftmax_gather_forward(test_stream(), lp1.p, ls1.p, gl1.p, gt1.p, 1, V);
    CHECK(same_bits(lp1.down(), slice(r_logp, size_t(m), 1)));
    CHECK(same_bits(ls1.down(), slice(r_lse, size_t(m), 1)));

    // Backward: overwrites (the buffer starts with garbage), with the CPU's lse as input to both.
    const auto dlogp = randn(size_t(M), 1.0f, 83u + V);
    vector<float> dl(size_t(M) * V, 7.0f);
    cpu::logsoftmax_gather_backward(dl.data(), dlogp.data(), logits.data(), lse.data(), target.data(), M, V);
    Dev<float> gdlogp(dlogp), gcpu_lse(lse), gdl(vector<float>(dl.size(), -3.0f));
    launch_logsoftmax_gather_backward(test_stream(), gdl.p, gdlogp.p, gl.p, gcpu_lse.p, gt.p, M, V);
    const auto r_dl = gdl.down();
    check_near("dlogits", r_dl, dl);
    launch_logsoftmax_gather_backward(test_stream(), gdl.p, gdlogp.p, gl.p, gcpu_lse.p, gt.p, M, V);
    CHECK(same_bits(gdl.down(), r_dl));
  }
}

// A NaN logit makes the CPU's lse NaN (its exp joins the sum). On the GPU a thread's online (max, sum) starts at
// (-inf, 0); a NaN met before the thread's first finite entry must not be dropped by the rescaling from -inf.
TEST_CASE(cuda_logsoftmax_gather_nan_logit_gives_nan) {
  if (!have_gpu()) return;
  const int M = 4, V = 1000;
  auto logits = randn(size_t(M) * V, 1.0f, 87u);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  logits[0] = nan;                      // row 0: NaN as thread 0's first entry, finite entries after it
  logits[size_t(V) + 700] = nan;        // row 1: NaN as a thread's second entry (after a finite one)
  logits[size_t(2) * V + 3] = nan;      // row 2: NaN as thread 3's first entry, target elsewhere
  for (int v = 0; v < V; v++) logits[size_t(3) * V + v] = v % 2 ? -INFINITY : nan;  // row 3: nothing above -inf
  const vector<int> target = {5, 6, 7, 8};
  vector<float> logp(static_cast<size_t>(M)), lse(static_cast<size_t>(M));
  cpu::logsoftmax_gather_forward(logp.data(), lse.data(), logits.data(), target.data(), M, V);
  Dev<float> gl(logits), glogp(static_cast<size_t>(M)), glse(static_cast<size_t>(M));
  Dev<int> gt(target);
  launch_logsoftmax_gather_forward(test_stream(), glogp.p, glse.p, gl.p, gt.p, M, V);
  const auto r_lse = glse.down(), r_logp = glogp.down();
  for (int m = 0; m < M; m++) {
    const size_t i = size_t(m);
    std::printf("  row %d: lse %g (cpu %g), logp %g (cpu %g)\n", m, r_lse[i], lse[i], r_logp[i], logp[i]);
    CHECK(std::isnan(r_lse[i]) == std::isnan(lse[i]) && (std::isnan(lse[i]) || r_lse[i] == lse[i]));
    CHECK(std::isnan(r_logp[i]) == std::isnan(logp[i]));
  }
  CHECK(std::isnan(lse[0]) && std::isnan(lse[1]) && std::isnan(lse[2]) && lse[3] == -INFINITY);
}

TEST_CASE(cuda_logsoftmax_gather_bad_target_gives_nan) {
  if (!have_gpu()) return;
  const int M = 2, V = 61;
  const auto logits = randn(size_t(M) * V, 1.0f, 85u);
  const vector<int> target = {3, V};  // row 1: outside the vocabulary (the CPU throws BadInput)
  Dev<float> gl(logits), glogp(static_cast<size_t>(M)), gdl(size_t(M) * V), gdlogp(vector<float>{1.0f, 1.0f}), glse(static_cast<size_t>(M));
  Dev<int> gt(target);
  launch_logsoftmax_gather_forward(test_stream(), glogp.p, glse.p, gl.p, gt.p, M, V);
  const auto lp = glogp.down();
  CHECK(std::isfinite(lp[0]) && std::isnan(lp[1]));
  launch_logsoftmax_gather_backward(test_stream(), gdl.p, gdlogp.p, gl.p, glse.p, gt.p, M, V);
  const auto dl = gdl.down();
  CHECK(std::isfinite(dl[0]) && std::isnan(dl[size_t(V)]));
}

TEST_CASE(cuda_argmax_matches_cpu) {
  if (!have_gpu()) return;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Shape { int M, V; };
  for (const Shape sh : {Shape{7, 1000}, Shape{7, 61}, Shape{7, 61952}}) {
    const int M = sh.M, V = sh.V;
    auto x = randn(size_t(M) * V, 1.0f, 91u + V);
    auto row = [&](int m) { return x.data() + size_t(m) * V; };
    row(0)[17] = 9.0f;
    row(0)[V - 2] = 9.0f;  // a tie: the first index wins
    std::fill(row(1), row(1) + V, 0.5f);  // all equal: 0
    row(2)[5] = nan;
    row(2)[V - 1] = 8.0f;  // NaN ignored
    row(3)[0] = nan;  // NaN first: 0 (the CPU scan never leaves it)
    row(3)[V / 2] = 8.0f;
    std::fill(row(4), row(4) + V, -INFINITY);  // all -inf: 0
    std::fill(row(5), row(5) + V, -INFINITY);
    row(5)[V - 1] = -1e30f;
    vector<int> ref(static_cast<size_t>(M));
    cpu::argmax_rows(ref.data(), x.data(), M, V);
    Dev<float> gx(x);
    Dev<int> gout(static_cast<size_t>(M));
    launch_argmax_rows(test_stream(), gout.p, gx.p, M, V);
    const auto got = gout.down();
    for (int m = 0; m < M; m++) CHECK(got[size_t(m)] == ref[size_t(m)]);
    CHECK(ref[0] == 17 && ref[1] == 0 && ref[2] == V - 1 && ref[3] == 0 && ref[4] == 0 && ref[5] == V - 1);
  }
}

// ---- arguments and launch errors ----

TEST_CASE(cuda_launchers_check_arguments) {
  // Argument checks come before any CUDA call, so they run with or without a GPU.
  CHECK_THROWS_CODE(launch_rope_forward(nullptr, nullptr, nullptr, 4, 2, 7, dpo::default_rope_table(8, 1e4f)),
                    ErrorCode::BadInput, "head_dim must be even");
  CHECK_THROWS_CODE(launch_rope_backward(nullptr, nullptr, nullptr, 4, 2, 1026, dpo::default_rope_table(8, 1e4f)),
                    ErrorCode::BadInput, "head_dim");
  CHECK_THROWS_CODE(launch_rope_forward(nullptr, nullptr, nullptr, 4, 2, 16, dpo::default_rope_table(8, 1e4f)),
                    ErrorCode::BadInput, "frequency table");
  CHECK_THROWS_CODE(launch_attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1,
                                             2, 2, 6, 4, 8),
                    ErrorCode::BadInput, "multiple of NKV");
  CHECK_THROWS_CODE(launch_attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr, 1, 2, 2, 4, 4, 512),
                    ErrorCode::BadInput, "head_dim");
  // Empty work launches nothing.
  launch_add_forward(nullptr, nullptr, nullptr, nullptr, 0);
  launch_rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 16, 1e-5f);
  launch_attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4, 4, 4, 4, 8);
  launch_logsoftmax_gather_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 61);
  // Without a GPU a launch fails, and the launcher reports it as E_INTERNAL naming the op and the CUDA error.
  if (!gpu_probe().available) {
    CHECK_THROWS_CODE(launch_add_forward(nullptr, nullptr, nullptr, nullptr, 10), ErrorCode::Internal,
                      "add_forward: cuda");
    CHECK_THROWS_CODE(launch_argmax_rows(nullptr, nullptr, nullptr, 3, 61), ErrorCode::Internal, "argmax_rows: cuda");
    cudaGetLastError();
  }
}

#else  // !DPO_WITH_CUDA

TEST_CASE(cuda_ops) { std::printf("  skipped: no GPU (the engine was built without CUDA)\n"); }

#endif

TEST_MAIN()
