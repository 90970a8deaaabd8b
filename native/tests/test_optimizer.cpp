// The optimizers against independent references: fp32 AdamW vs a double torch-order Adam, the 8-bit blockwise
// AdamW (docs/reference/optimizer.md) vs a straightforward per-element re-implementation, and clip_grad_norm_
// (docs/reference/trainer.md#gradient-clipping). Each optimizer check runs twice: on the host classes
// (train/optimizer.h) and on the device-state classes (train/device_adamw.h) through the guarded CPU backend, which
// also proves the device path never touches backend memory from the host; both must also agree bit for bit, as must the
// backend's gradient norm and clipping with the host ones.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "adam_test_data.h"
#include "check.h"
#include "core/device_array.h"
#include "cpu/thread_pool.h"
#include "dpo/backend.h"
#include "dpo/errors.h"
#include "quant/nf4.h"
#include "train/device_adamw.h"
#include "train/adam_math.h"
#include "train/optimizer.h"
#include "train/quantize_2d_count.h"
#include "train/step_common.h"

using namespace dpo;

namespace {

// fp32 ops with exactly one rounding each, immune to FMA contraction: every result goes through a volatile, so the
// compiler can neither fuse it into the next op nor narrow a chain of them (the build uses -ffp-contract=fast).
float f_mul(float a, float b) {
  volatile float r = a * b;
  return r;
}
float f_add(float a, float b) {
  volatile float r = a + b;
  return r;
}
float f_div(float a, float b) {
  volatile float r = a / b;
  return r;
}
float f_sqrt(float a) {
  volatile float r = std::sqrt(a);
  return r;
}

std::vector<float> uniform(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

using dpo_test::as_floats;
using dpo_test::count_far;
using dpo_test::grads_for;
using dpo_test::hyper;
using dpo_test::RefAdam;

// ---- The optimizer under test, on host vectors: a host class, or a device class on the guarded CPU backend. ----

enum class Where { Host, Device };
const char* where_name(Where w) { return w == Where::Host ? "host" : "device (cpu-guarded)"; }
const Where kWheres[2] = {Where::Host, Where::Device};

Backend& guarded() {
  static std::unique_ptr<Backend> be = make_guarded_cpu_backend();
  return *be;
}

// An 8-bit optimizer's state as the checks read it (copied from the host class, downloaded from the device one).
struct State8 {
  int64_t step = 0;
  bool blockwise = false;
  int64_t blocks = 0;
  std::vector<uint8_t> state1, state2;
  std::vector<float> absmax1, absmax2, m32, v32;
  // code[c] * absmax[i / 2048], or the fp32 value: what the next update reads.
  float m_at(size_t i) const {
    return blockwise ? dynamic_map_signed()[state1[i]] * absmax1[i / kAdam8bitBlockSize] : m32[i];
  }
  float v_at(size_t i) const {
    return blockwise ? dynamic_map_unsigned()[state2[i]] * absmax2[i / kAdam8bitBlockSize] : v32[i];
  }
};

// One optimizer (fp32 AdamW, or bnb 8-bit AdamW) that updates a host parameter vector in place: the device variant
// uploads params and gradients, steps on the backend and downloads the params.
class UnderTest {
 public:
  UnderTest(Where where, bool eight_bit, int64_t n) : where_(where), eight_bit_(eight_bit) {
    if (where == Where::Host) {
      if (eight_bit) host8_ = std::make_unique<AdamW8bit>(n);
      else host32_ = std::make_unique<AdamW>(n);
    } else {
      if (eight_bit) dev8_ = std::make_unique<DeviceAdamW8bit>(guarded(), n);
      else dev32_ = std::make_unique<DeviceAdamW>(guarded(), n);
      p_ = DeviceArray<float>(guarded(), size_t(n));
      g_ = DeviceArray<float>(guarded(), size_t(n));
    }
  }
  void update(std::vector<float>& p, const std::vector<float>& g, const AdamHyper& h) {
    if (where_ == Where::Host) return base_host().update(p.data(), g.data(), h);
    p_.upload(p);
    g_.upload(g);
    base_dev().update(p_.get(), g_.get(), h);
    p_.download(p.data(), p.size());
  }
  int64_t step() const { return where_ == Where::Host ? base_host().step() : base_dev().step(); }
  uint64_t state_bytes() const { return where_ == Where::Host ? base_host().state_bytes() : base_dev().state_bytes(); }
  // fp32 AdamW's exp_avg, exp_avg_sq.
  std::vector<float> m() const { return host32_ ? host32_->m() : dev32_->m(); }
  std::vector<float> v() const { return host32_ ? host32_->v() : dev32_->v(); }
  State8 state8() const {
    State8 st;
    if (host8_) {
      st = {host8_->step(),    host8_->blockwise(), host8_->blocks(), host8_->state1(), host8_->state2(),
            host8_->absmax1(), host8_->absmax2(),   host8_->m32(),    host8_->v32()};
    } else {
      st = {dev8_->step(),    dev8_->blockwise(), dev8_->blocks(), dev8_->state1(), dev8_->state2(),
            dev8_->absmax1(), dev8_->absmax2(),   dev8_->m32(),    dev8_->v32()};
    }
    return st;
  }
  bool eight_bit() const { return eight_bit_; }

 private:
  ParamOptimizer& base_host() const {
    return host8_ ? static_cast<ParamOptimizer&>(*host8_) : static_cast<ParamOptimizer&>(*host32_);
  }
  DeviceOptimizer& base_dev() const {
    return dev8_ ? static_cast<DeviceOptimizer&>(*dev8_) : static_cast<DeviceOptimizer&>(*dev32_);
  }
  Where where_;
  bool eight_bit_;
  std::unique_ptr<AdamW> host32_;
  std::unique_ptr<AdamW8bit> host8_;
  std::unique_ptr<DeviceAdamW> dev32_;
  std::unique_ptr<DeviceAdamW8bit> dev8_;
  DeviceArray<float> p_, g_;
};

// Nearest code, written as a linear scan: the bracket code[k] <= x < code[k+1], then the fp32 midpoint
// (code[k] + code[k+1]) * 0.5f decides, as in bnb (x exactly on the midpoint would follow bnb's search path; random
// data never lands there). Below code[0] -> 0, from code[255] up -> 255, NaN -> 0.
int nearest_code(const float* code, float x) {
  if (std::isnan(x) || x <= code[0]) return 0;
  if (x >= code[255]) return 255;
  int k = 0;
  while (k < 254 && code[k + 1] <= x) k++;
  if (x == code[k]) return k;
  return x > (code[k] + code[k + 1]) * 0.5f ? k + 1 : k;
}

// One 8-bit step of docs/reference/optimizer.md#8-bit-update, element by element, from the optimizer's current state;
// fills the expected state bytes, absmax and parameters.
struct Expected8bit {
  std::vector<uint8_t> c1, c2;
  std::vector<float> a1, a2, p;
};

Expected8bit reference_8bit_step(const State8& opt, const std::vector<float>& p, const std::vector<float>& g,
                                 const AdamHyper& hd) {
  const float lr = float(hd.lr), b1 = float(hd.beta1), b2 = float(hd.beta2), eps = float(hd.eps),
              wd = float(hd.weight_decay);
  const float* q1 = dynamic_map_signed();
  const float* q2 = dynamic_map_unsigned();
  const int64_t n = int64_t(p.size()), B = kAdam8bitBlockSize, blocks = (n + B - 1) / B;
  const float t = float(opt.step + 1);
  const float corr1 = 1.0f - std::pow(b1, t);
  const float corr2 = std::sqrt(1.0f - std::pow(b2, t));
  const float step_size = f_div(f_mul(-lr, corr2), corr1);
  Expected8bit e;
  e.c1.resize(size_t(n));
  e.c2.resize(size_t(n));
  e.a1.resize(size_t(blocks));
  e.a2.resize(size_t(blocks));
  e.p = p;
  std::vector<float> m(static_cast<size_t>(n)), v(static_cast<size_t>(n));
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t e0 = b * B, e1 = std::min(n, e0 + B);
    const float old_a1 = opt.absmax1[size_t(b)], old_a2 = opt.absmax2[size_t(b)];
    // dequantize -> update -> block absmax
    float max1 = 0.0f, max2 = 0.0f;
    for (int64_t i = e0; i < e1; i++) {
      const float gi = g[size_t(i)];
      if (std::isfinite(gi)) {
        const float m_old = f_mul(q1[opt.state1[size_t(i)]], old_a1);
        const float v_old = f_mul(q2[opt.state2[size_t(i)]], old_a2);
        m[size_t(i)] = f_add(f_mul(m_old, b1), f_mul(1.0f - b1, gi));
        v[size_t(i)] = f_add(f_mul(v_old, b2), f_mul(f_mul(1.0f - b2, gi), gi));
      } else {
        m[size_t(i)] = v[size_t(i)] = 0.0f;
      }
      max1 = std::max(max1, std::fabs(m[size_t(i)]));
      max2 = std::max(max2, std::fabs(v[size_t(i)]));
    }
    // bnb's tail lanes of a partial block: g = 0 with state bytes 128 / 0 join the max (see adamw_8bit.cpp).
    if (e1 - e0 < B) max1 = std::max(max1, std::fabs(f_mul(f_mul(q1[128], old_a1), b1)));
    e.a1[size_t(b)] = max1;
    e.a2[size_t(b)] = max2;
    // parameter step, then nearest code with the new absmax and the sign fix
    for (int64_t i = e0; i < e1; i++) {
      const float mi = m[size_t(i)], vi = v[size_t(i)];
      if (std::isfinite(g[size_t(i)])) {
        float pi = f_add(p[size_t(i)], f_mul(step_size, f_div(mi, f_add(f_sqrt(vi), f_mul(corr2, eps)))));
        if (wd > 0.0f) pi = f_mul(pi, 1.0f - f_mul(lr, wd));
        e.p[size_t(i)] = pi;
      }
      int c1 = nearest_code(q1, f_div(mi, max1));
      if (std::signbit(q1[c1]) != std::signbit(mi)) c1 = (c1 + (mi > 0.0f ? 1 : -1)) & 255;
      e.c1[size_t(i)] = uint8_t(c1);
      e.c2[size_t(i)] = uint8_t(nearest_code(q2, f_div(vi, max2)));
    }
  }
  return e;
}

// Compares the optimizer's state and params after a step with the expectation; returns the mismatch count.
int compare_8bit(const State8& opt, const std::vector<float>& p, const Expected8bit& e) {
  int bad = 0;
  for (size_t b = 0; b < e.a1.size(); b++)
    if (opt.absmax1[b] != e.a1[b] || opt.absmax2[b] != e.a2[b]) {
      if (bad++ < 3)
        std::printf("  block %zu absmax %.9g %.9g, want %.9g %.9g\n", b, opt.absmax1[b], opt.absmax2[b], e.a1[b],
                    e.a2[b]);
    }
  for (size_t i = 0; i < p.size(); i++)
    if (opt.state1[i] != e.c1[i] || opt.state2[i] != e.c2[i] || p[i] != e.p[i]) {
      if (bad++ < 3)
        std::printf("  [%zu] codes %d %d p %.9g, want %d %d p %.9g\n", i, opt.state1[i], opt.state2[i], p[i], e.c1[i],
                    e.c2[i], e.p[i]);
    }
  return bad;
}

}  // namespace

// torch AdamW over 5 steps with a varying lr (0 first, as the HF schedule does,
// docs/reference/trainer.md#learning-rate-schedule) and weight decay.
TEST_CASE(adamw_fp32_matches_double_reference) {
  CHECK(dynamic_cast<AdamW*>(make_adamw(10).get()) != nullptr);
  for (const Where where : kWheres) {
    std::printf("  %s\n", where_name(where));
    const size_t n = 3000;
    std::vector<float> p = uniform(n, -1.0f, 1.0f, 1);
    const std::vector<float> p0 = p;
    UnderTest opt(where, false, int64_t(n));
    RefAdam ref(p);
    const double lrs[5] = {0.0, 1e-2, 3e-3, 2e-2, 5e-3};
    const float scales[5] = {1.0f, 0.5f, 2.0f, 1e-3f, 1.0f};
    for (int s = 0; s < 5; s++) {
      const std::vector<float> g = grads_for(n, scales[s], 100 + s);
      const AdamHyper h = hyper(lrs[s], 0.1);
      opt.update(p, g, h);
      ref.step(g, h, /*decay_first=*/true);
      CHECK(opt.step() == s + 1);
      const std::vector<float> m = opt.m(), v = opt.v();
      // fp32 vs double: a few roundings of O(1) params per step, so ~1e-7 absolute; 1e-6 relative with a 2e-7 floor.
      CHECK(count_far("p", p.data(), ref.p, 2e-7, 1e-6) == 0);
      // m and v: a few fp32 roundings of terms of size ~0.1*|g| and ~1e-3*g^2 (m may cancel towards 0 between
      // steps, so the floor matters more than the relative part).
      CHECK(count_far("m", m.data(), ref.m, 1e-7, 1e-6) == 0);
      CHECK(count_far("v", v.data(), ref.v, 2e-9, 1e-6) == 0);
      if (s == 0) {
        // lr = 0: params untouched (bitwise), but m, v and t advanced.
        bool same = true;
        for (size_t i = 0; i < n; i++) same = same && p[i] == p0[i];
        CHECK(same);
        CHECK(m[7] != 0.0f && v[7] > 0.0f);
      }
    }
    CHECK(opt.state_bytes() == n * 8);
  }
}

// (a) n < 4096: bnb keeps fp32 state (kOptimizer32bit2State), i.e. fp32 Adam with the decay after the step.
TEST_CASE(adamw_8bit_small_tensor_is_fp32_adam) {
  CHECK(dynamic_cast<AdamW8bit*>(make_adamw_8bit(1000).get()) != nullptr);
  for (const Where where : kWheres) {
    std::printf("  %s\n", where_name(where));
    const size_t n = 1000;
    std::vector<float> p = uniform(n, -1.0f, 1.0f, 2);
    std::vector<float> p_torch = p;
    UnderTest opt(where, true, int64_t(n));
    CHECK(!opt.state8().blockwise);
    CHECK(opt.state_bytes() == n * 8);
    UnderTest torch_opt(where, false, int64_t(n));
    RefAdam ref(p), ref_nowd(p);
    const double lrs[5] = {0.0, 1e-2, 3e-3, 2e-2, 5e-3};
    for (int s = 0; s < 5; s++) {
      const std::vector<float> g = grads_for(n, s == 3 ? 1e-3f : 1.0f, 200 + s);
      opt.update(p, g, hyper(lrs[s], 0.1));
      ref.step(g, as_floats(hyper(lrs[s], 0.1)), /*decay_first=*/false);
      const State8 st = opt.state8();
      CHECK(count_far("p", p.data(), ref.p, 2e-7, 1e-6) == 0);
      CHECK(count_far("m", st.m32.data(), ref.m, 1e-7, 1e-6) == 0);
      CHECK(count_far("v", st.v32.data(), ref.v, 2e-9, 1e-6) == 0);
      // Without weight decay it is the same optimizer as torch AdamW, up to fp32 rounding.
      torch_opt.update(p_torch, g, hyper(lrs[s], 0.0));
      ref_nowd.step(g, hyper(lrs[s], 0.0), true);
      CHECK(count_far("p_torch", p_torch.data(), ref_nowd.p, 2e-7, 1e-6) == 0);
    }
    CHECK(opt.step() == 5);
  }
}

// quantize_2D (the optimizer's search) gives the same codes as dQuantize (dynamic_code,
// docs/reference/nf4.md#double-quantisation) on both maps.
TEST_CASE(quantize_2d_equals_dquantize) {
  for (int s = 0; s < 2; s++) {
    const bool is_signed = s == 0;
    const float* code = is_signed ? dynamic_map_signed() : dynamic_map_unsigned();
    std::vector<float> xs = {-1.0f, 0.0f, -0.0f, 1.0f, 1e-30f, -1e-30f, NAN, 0.99999994f, -0.99999994f};
    for (int i = 0; i < 256; i++) {
      xs.push_back(code[i]);
      if (i < 255) {
        const float mid = (code[i] + code[i + 1]) * 0.5f;
        xs.push_back(mid);
        xs.push_back(std::nextafter(mid, 2.0f));
        xs.push_back(std::nextafter(mid, -2.0f));
      }
    }
    for (float x : uniform(100000, is_signed ? -1.0f : 0.0f, 1.0f, 3 + s)) xs.push_back(x);
    int bad = 0;
    for (float x : xs) {
      const int a = quantize_2d(code, x, is_signed), b = dynamic_code(code, x);
      if (a != b && bad++ < 3) std::printf("  x=%.9g: quantize_2d %d, dynamic_code %d\n", x, a, b);
      // nearest_code settles exact fp32-midpoint ties downwards, bnb by its search path: compare off the ties.
      const bool tie = std::any_of(code, code + 255, [&](const float& c) { return x == (c + (&c)[1]) * 0.5f; });
      if (!std::isnan(x) && !tie && a != nearest_code(code, x) && bad++ < 3)
        std::printf("  x=%.9g: quantize_2d %d, nearest %d\n", x, a, nearest_code(code, x));
    }
    CHECK(bad == 0);
    CHECK(quantize_2d(code, NAN, is_signed) == 0);
  }
}

TEST_CASE(quantize_2d_by_counting_equals_the_search) {
  // The CPU's 8-bit AdamW finds bnb's code by counting (train/quantize_2d_count.h); it must equal the search for
  // every float: the map's entries, their midpoints and neighbours, zeros, infinities, NaN, the ends, and a sweep
  // of one float in 4099 over all 2^32 bit patterns (one in 7 was compared once by hand: docs/cpu-kernels.md).
  // With AVX-512: one value at a time and 16 lanes; with AVX2: 8 lanes; each value in several lane positions.
#if defined(__AVX2__)
  for (int s = 0; s < 2; s++) {
    const bool is_signed = s == 0;
    const float* code = is_signed ? dynamic_map_signed() : dynamic_map_unsigned();
    std::vector<float> xs = {-1.0f, 0.0f, -0.0f, 1.0f, 2.0f, -2.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX};
    for (int i = 0; i < 256; i++) {
      xs.push_back(code[i]);
      xs.push_back(std::nextafter(code[i], 2.0f));
      xs.push_back(std::nextafter(code[i], -2.0f));
      if (i < 255) {
        const float mid = (code[i] + code[i + 1]) * 0.5f;
        xs.push_back(mid);
        xs.push_back(std::nextafter(mid, 2.0f));
        xs.push_back(std::nextafter(mid, -2.0f));
      }
    }
    for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
      const uint32_t bits = uint32_t(u);
      float x;
      std::memcpy(&x, &bits, sizeof x);
      xs.push_back(x);
    }
    while (xs.size() % 16) xs.push_back(0.5f);
    int bad = 0;
    auto compare = [&](const char* form, float x, int got) {
      const int want = adam::quantize_2d(code, x, is_signed);
      if (want != got && bad++ < 3) std::printf("  x=%.9g: search %d, %s %d\n", x, want, form, got);
    };
#if defined(__AVX512F__)
    const adam::OddCodeTable table(code);
    for (float x : xs) compare("count", x, adam::quantize_2d_count(code, table, x, is_signed));
    for (int shift = 0; shift < 16; shift += 5) {
      for (size_t i = 0; i < xs.size(); i += 16) {
        alignas(64) float lanes[16];
        for (int l = 0; l < 16; l++) lanes[l] = xs[i + (l + shift) % 16];
        alignas(16) uint8_t got[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(got),
                        adam::quantize_2d_count16(code, table, _mm512_load_ps(lanes), is_signed));
        for (int l = 0; l < 16; l++) compare("16 lanes", lanes[l], got[l]);
      }
    }
#else
    const adam::OddCodeTable table(code);
#endif
    for (int shift = 0; shift < 8; shift += 3) {
      for (size_t i = 0; i < xs.size(); i += 8) {
        alignas(32) float lanes[8];
        for (int l = 0; l < 8; l++) lanes[l] = xs[i + (l + shift) % 8];
        uint8_t got[8];
        adam::quantize_2d_count8(got, code, table, _mm256_load_ps(lanes), is_signed);
        for (int l = 0; l < 8; l++) compare("8 lanes", lanes[l], got[l]);
      }
    }
    CHECK(bad == 0);
  }
#else
  std::printf("  no AVX2 in this build: the search runs\n");
#endif
}

// (b) n = 5000: blocks of 2048, 2048 and a partial 904. Every step is checked exactly against the per-element
// re-implementation (state bytes, absmax, params), and the params against full-precision Adam within the 8-bit
// state error.
TEST_CASE(adamw_8bit_blockwise_matches_reference) {
  for (const Where where : kWheres) {
    std::printf("  %s\n", where_name(where));
    const size_t n = 5000;
    std::vector<float> p = uniform(n, -1.0f, 1.0f, 4);
    UnderTest opt(where, true, int64_t(n));
    CHECK(opt.state8().blockwise && opt.state8().blocks == 3);
    RefAdam ref(p);
    const double lrs[4] = {0.0, 1e-3, 2e-3, 1e-3};
    const double wds[4] = {0.0, 0.0, 0.01, 0.0};
    double lr_sum = 0.0;
    std::vector<double> m_bound(3, 0.0);
    for (int s = 0; s < 4; s++) {
      std::vector<float> g = grads_for(n, s == 2 ? 0.1f : 1.0f, 300 + s);
      // A tiny negative m rounds to code 127 (+0.0), and the sign fix must move it to 126 (the smallest negative).
      if (s == 0) g[100] = -1e-9f;
      const AdamHyper h = hyper(lrs[s], wds[s]);
      const Expected8bit e = reference_8bit_step(opt.state8(), p, g, h);
      opt.update(p, g, h);
      ref.step(g, as_floats(h), /*decay_first=*/false);
      lr_sum += lrs[s];
      const State8 st = opt.state8();
      CHECK(st.step == s + 1);
      CHECK(compare_8bit(st, p, e) == 0);
      if (s == 0) CHECK(st.state1[100] == 126);
      // Each requantization moves m by at most half a code gap: the signed map's widest gap is 0.9/64 of absmax (the
      // [0.1, 1] decade), so <= 0.00703 * absmax1. Older errors decay by b1 per step, hence the running bound
      // bound_b = b1 * bound_b + 0.00703 * absmax1_b (x1.05 for the fp32 rounding of the exact-m reference).
      int far_m = 0;
      for (size_t b = 0; b < m_bound.size(); b++) m_bound[b] = 0.9 * m_bound[b] + 0.00703 * st.absmax1[b];
      for (size_t i = 0; i < n; i++) {
        const double bound = 1.05 * m_bound[i / kAdam8bitBlockSize] + 1e-9;
        if (std::fabs(double(st.m_at(i)) - ref.m[i]) > bound && far_m++ < 3)
          std::printf("  m[%zu] = %.9g, exact %.9g (bound %.3g)\n", i, st.m_at(i), ref.m[i], bound);
      }
      CHECK(far_m == 0);
      // Params vs unquantized Adam. A step moves a param by about lr*|m^|/sqrt(v^) (<= ~lr; gradients vary at most 5x
      // within a block here); the 8-bit state perturbs m by the bound above and v by half a gap of the unsigned map
      // (<= 0.36% of absmax2 in its top decade), so each move is off by a few percent of lr at most, and 5% of sum(lr)
      // bounds the accumulated error (measured: 2.2% max, 0.35% mean).
      CHECK(count_far("p", p.data(), ref.p, 0.05 * lr_sum + 1e-7, 0.0) == 0);
    }
  }
}

// The block update is deterministic whatever the thread count (blocks are independent).
TEST_CASE(adamw_8bit_thread_count_independent) {
  const size_t n = 3 * 2048 + 77;
  std::vector<float> pa = uniform(n, -1.0f, 1.0f, 5), pb = pa;
  AdamW8bit a{int64_t(n)}, b{int64_t(n)};
  const int saved = cpu_thread_count();
  for (int s = 0; s < 3; s++) {
    const std::vector<float> g = grads_for(n, 1.0f, 400 + s);
    set_cpu_thread_count(1);
    a.update(pa.data(), g.data(), hyper(1e-3, 0.0));
    set_cpu_thread_count(2);
    b.update(pb.data(), g.data(), hyper(1e-3, 0.0));
  }
  set_cpu_thread_count(saved);
  CHECK(pa == pb);
  CHECK(a.state1() == b.state1() && a.state2() == b.state2());
  CHECK(a.absmax1() == b.absmax1() && a.absmax2() == b.absmax2());
}

// (c) A non-finite gradient element: m = v = 0 and its param untouched; its neighbours update normally. A whole
// partial block of non-finite gradients shows the tail-lane rule: its new absmax1 is q1[128] * old absmax1 * b1.
TEST_CASE(adamw_8bit_nonfinite_gradient) {
  for (const Where where : kWheres) {
    std::printf("  %s\n", where_name(where));
    const size_t n = 5000;
    std::vector<float> p = uniform(n, -1.0f, 1.0f, 6);
    UnderTest opt(where, true, int64_t(n));
    std::vector<float> g = grads_for(n, 1.0f, 500);
    opt.update(p, g, hyper(1e-3, 0.0));
    const float old_a1_tail = opt.state8().absmax1[2];
    CHECK(old_a1_tail > 0.0f);

    g = grads_for(n, 1.0f, 501);
    g[10] = NAN;
    g[3000] = INFINITY;
    for (size_t i = 4096; i < n; i++) g[i] = -INFINITY;
    const std::vector<float> before = p;
    const Expected8bit e = reference_8bit_step(opt.state8(), p, g, hyper(1e-3, 0.1));
    opt.update(p, g, hyper(1e-3, 0.1));
    const State8 st = opt.state8();
    CHECK(compare_8bit(st, p, e) == 0);
    CHECK(p[10] == before[10] && p[3000] == before[3000]);
    CHECK(p[11] != before[11] && p[2999] != before[2999]);
    CHECK(st.m_at(10) == 0.0f && st.v_at(10) == 0.0f && st.m_at(3000) == 0.0f && st.v_at(3000) == 0.0f);
    CHECK(st.state1[10] == 127 && st.state2[10] == 0);  // 0 / absmax -> the 0.0 codes
    bool tail_ok = true;
    for (size_t i = 4096; i < n; i++)
      tail_ok = tail_ok && p[i] == before[i] && st.state1[i] == 127 && st.state2[i] == 0 && st.m_at(i) == 0.0f;
    CHECK(tail_ok);
    CHECK(st.absmax1[2] == f_mul(f_mul(dynamic_map_signed()[128], old_a1_tail), 0.9f));
    CHECK(st.absmax2[2] == 0.0f);
  }
}

// (d) An all-zero gradient block on zero state: params unchanged with lr > 0; absmax stays 0 and m's 0/0 = NaN
// lands on code 0, which the sign fix wraps to 255 (docs/reference/optimizer.md#8-bit-update), dequantizing to 1.0 * 0.
TEST_CASE(adamw_8bit_zero_block) {
  for (const Where where : kWheres) {
    std::printf("  %s\n", where_name(where));
    const size_t n = 5000;
    std::vector<float> p = uniform(n, -1.0f, 1.0f, 7);
    std::vector<float> g = grads_for(n, 1.0f, 600);
    for (size_t i = 2048; i < 4096; i++) g[i] = 0.0f;
    const std::vector<float> before = p;
    UnderTest opt(where, true, int64_t(n));
    opt.update(p, g, hyper(1e-3, 0.0));
    const State8 st = opt.state8();
    bool same = true, codes = true;
    for (size_t i = 2048; i < 4096; i++) {
      same = same && p[i] == before[i];
      codes = codes && st.state1[i] == 255 && st.state2[i] == 0 && st.m_at(i) == 0.0f;
    }
    CHECK(same);
    CHECK(codes);
    CHECK(st.absmax1[1] == 0.0f && st.absmax2[1] == 0.0f);
    CHECK(p[0] != before[0] && p[4096] != before[4096]);
    // The next step starts that block from 0 as if fresh.
    g = grads_for(n, 1.0f, 601);
    const Expected8bit e = reference_8bit_step(st, p, g, hyper(1e-3, 0.0));
    opt.update(p, g, hyper(1e-3, 0.0));
    CHECK(compare_8bit(opt.state8(), p, e) == 0);
  }
}

// (e) 2 bytes per element plus two fp32 scales per 2048.
TEST_CASE(adamw_8bit_state_bytes) {
  const int64_t n = int64_t(1) << 20;
  auto opt = make_adamw_8bit(n);
  CHECK(opt->state_bytes() == uint64_t(2 * n + 8 * (n / 2048)));
  CHECK(double(opt->state_bytes()) / double(n) < 2.01);
  CHECK(make_adamw_8bit(4095)->state_bytes() == 4095u * 8);
  CHECK(make_adamw_8bit(4096)->state_bytes() == 4096u * 2 + 2 * 8);
  CHECK_THROWS_CODE(make_adamw_8bit(-1), ErrorCode::BadInput, "negative");
  // The device classes hold the same state (and report the same sizes) in backend memory.
  Backend& be = guarded();
  const uint64_t before = be.bytes_in_use();
  {
    auto dev = make_device_adamw_8bit(be, n);
    CHECK(dev->state_bytes() == opt->state_bytes());
    CHECK(be.bytes_in_use() - before == dev->state_bytes());
    CHECK(make_device_adamw_8bit(be, 4095)->state_bytes() == 4095u * 8);
    CHECK(make_device_adamw(be, 4095)->state_bytes() == 4095u * 8);
  }
  CHECK(be.bytes_in_use() == before);
  CHECK_THROWS_CODE(make_device_adamw_8bit(be, -1), ErrorCode::BadInput, "negative");
  CHECK_THROWS_CODE(make_device_adamw(be, -1), ErrorCode::BadInput, "negative");
}

// torch clip_grad_norm_: total = norm of the per-tensor norms; coef = min(1, max_norm / (total + 1e-6)).
TEST_CASE(grad_norm_and_clipping) {
  std::vector<float> a = uniform(1000, -1.0f, 1.0f, 8), b = uniform(70000, -0.01f, 0.01f, 9), c = {3.0f, -4.0f};
  std::vector<std::pair<const float*, int64_t>> cg = {
      {a.data(), int64_t(a.size())}, {b.data(), int64_t(b.size())}, {nullptr, 0}, {c.data(), 2}};
  double sq = 0.0;
  for (auto* v : {&a, &b, &c})
    for (float x : *v) sq += double(x) * x;
  const float norm = global_grad_norm(cg);
  CHECK_CLOSE(norm, std::sqrt(sq), 0.0, 1e-6);
  const int saved = cpu_thread_count();
  set_cpu_thread_count(1);
  CHECK(global_grad_norm(cg) == norm);
  set_cpu_thread_count(saved);

  // norm > max_norm: every gradient scaled by the fp32 coefficient.
  std::vector<std::pair<float*, int64_t>> g = {
      {a.data(), int64_t(a.size())}, {b.data(), int64_t(b.size())}, {c.data(), 2}};
  const std::vector<float> a0 = a, b0 = b;
  const float coef = clip_grad_norm(g, 1.0f, norm);
  CHECK(coef == f_div(1.0f, f_add(norm, 1e-6f)));
  CHECK_CLOSE(coef, 1.0 / std::sqrt(sq), 0.0, 1e-6);
  bool scaled = true;
  for (size_t i = 0; i < a.size(); i++) scaled = scaled && a[i] == f_mul(a0[i], coef);
  for (size_t i = 0; i < b.size(); i++) scaled = scaled && b[i] == f_mul(b0[i], coef);
  CHECK(scaled);
  CHECK_CLOSE(global_grad_norm(cg), 1.0, 0.0, 2e-6);

  // norm < max_norm: coefficient 1, gradients bitwise unchanged.
  std::vector<float> d = uniform(500, -0.01f, 0.01f, 10);
  const std::vector<float> d0 = d;
  const float dn = global_grad_norm({{d.data(), int64_t(d.size())}});
  CHECK(dn < 1.0f);
  CHECK(clip_grad_norm({{d.data(), int64_t(d.size())}}, 1.0f, dn) == 1.0f);
  CHECK(d == d0);
  // norm == max_norm still scales by 1/(1 + 1e-6) < 1, as torch does.
  CHECK(clip_grad_norm({{d.data(), int64_t(d.size())}}, 1.0f, 1.0f) < 1.0f);
}

// The device classes against the host classes, bit for bit, over several steps with weight decay, a varying lr,
// non-finite gradients and a zero block: the CPU backend runs the host classes' own functions, and the guarded
// backend shows the update never reads or writes backend memory from the host.
TEST_CASE(device_optimizers_equal_host_bitwise) {
  struct Case {
    bool eight_bit;
    size_t n;
    double wd;
  };
  for (const Case c : {Case{false, 3000, 0.1}, Case{false, 3000, 0.0}, Case{true, 1000, 0.1},
                       Case{true, 3 * 2048 + 77, 0.01}, Case{true, 4096, 0.0}}) {
    std::printf("  %s n=%zu wd=%g\n", c.eight_bit ? "8-bit" : "fp32", c.n, c.wd);
    std::vector<float> ph = uniform(c.n, -1.0f, 1.0f, 11), pd = ph;
    UnderTest host(Where::Host, c.eight_bit, int64_t(c.n)), dev(Where::Device, c.eight_bit, int64_t(c.n));
    const double lrs[5] = {0.0, 1e-2, 3e-3, 2e-2, 5e-3};
    for (int s = 0; s < 5; s++) {
      std::vector<float> g = grads_for(c.n, s == 3 ? 1e-3f : 1.0f, 700 + s);
      if (s == 2) {
        g[5] = NAN, g[c.n - 1] = INFINITY;
        if (c.n > 4096)
          for (size_t i = 2048; i < 4096; i++) g[i] = 0.0f;
      }
      host.update(ph, g, hyper(lrs[s], c.wd));
      dev.update(pd, g, hyper(lrs[s], c.wd));
    }
    CHECK(dev.step() == 5 && host.step() == 5);
    CHECK(std::memcmp(ph.data(), pd.data(), c.n * sizeof(float)) == 0);
    if (!c.eight_bit) {
      CHECK(std::memcmp(host.m().data(), dev.m().data(), c.n * sizeof(float)) == 0);
      CHECK(std::memcmp(host.v().data(), dev.v().data(), c.n * sizeof(float)) == 0);
      continue;
    }
    const State8 a = host.state8(), b = dev.state8();
    CHECK(a.state1 == b.state1 && a.state2 == b.state2);
    CHECK(a.absmax1.size() == b.absmax1.size() && a.m32.size() == b.m32.size());
    auto same_floats = [](const std::vector<float>& x, const std::vector<float>& y) {
      return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    CHECK(same_floats(a.absmax1, b.absmax1) && same_floats(a.absmax2, b.absmax2));
    CHECK(same_floats(a.m32, b.m32) && same_floats(a.v32, b.v32));
  }
}

// clip_grad_norm_ on the backend (step_common.h's measure_and_clip: Backend::l2_norm per tensor, the norms combined
// on the host, Backend::scale) gives the host's norm and clipped gradients bit for bit.
TEST_CASE(backend_grad_norm_and_clip_equal_host) {
  Backend& be = guarded();
  const std::vector<std::vector<float>> host = {uniform(1000, -1.0f, 1.0f, 8),
                                                uniform(70000, -0.01f, 0.01f, 9),
                                                {},
                                                {3.0f, -4.0f},
                                                uniform(3 * 65536 + 5, -0.1f, 0.1f, 12)};
  for (const float max_norm : {1.0f, 1e6f, 0.0f}) {
    std::vector<std::vector<float>> h = host;
    std::vector<DeviceArray<float>> d;
    std::vector<std::pair<float*, int64_t>> hg, dg;
    for (auto& v : h) {
      d.push_back(DeviceArray<float>::from_host(be, v));
      hg.push_back({v.data(), int64_t(v.size())});
      dg.push_back({d.back().get(), int64_t(v.size())});
    }
    // Per-tensor norms: the op writes the host function's value.
    DeviceArray<float> norms(be, h.size());
    for (size_t i = 0; i < h.size(); i++) be.l2_norm(norms.get() + i, dg[i].first, dg[i].second);
    const std::vector<float> dn = norms.to_host();
    for (size_t i = 0; i < h.size(); i++) CHECK(dn[i] == cpu::l2_norm(h[i].data(), int64_t(h[i].size())));
    CHECK(dn[2] == 0.0f);

    std::vector<std::pair<const float*, int64_t>> view(hg.begin(), hg.end());
    const float want = global_grad_norm(view);
    if (max_norm > 0) clip_grad_norm(hg, max_norm, want);
    const float got = measure_and_clip(be, dg, max_norm);
    CHECK(got == want);
    for (size_t i = 0; i < h.size(); i++) CHECK(d[i].to_host() == h[i]);
    if (max_norm == 1.0f) CHECK(h[0] != host[0]);  // this one clipped
    else CHECK(h[0] == host[0]);
  }
}

TEST_MAIN()
