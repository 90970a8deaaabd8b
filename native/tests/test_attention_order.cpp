// The CPU attention (src/cpu/attention.cpp) computes exactly what the plain key-order loops written out below compute:
// scores by dot16, exp and the softmax sum in key order, values and gradients added one key at a time with one fused
// multiply-add per element. Its fast paths (keys gathered once per row, four scores per lane reduction, registers
// instead of memory for the running sums, head sizes unrolled) must keep those bits, because prefill, cached decode,
// packed answer pairs and the CUDA comparison all lean on one fixed arithmetic per query row
// (docs/cpu-kernels.md#attention).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.h"
#include "op_checks.h"
#include "random_data.h"
#include "cpu/ops.h"
#include "dpo/backend.h"
#include "cpu/thread_pool.h"
#include "cpu/vec.h"

using namespace dpo;
using namespace dpo_test;
using std::vector;

namespace {

struct Shape {
  int B, T, NH, NKV, HD;
};

struct Inputs {
  vector<float> q, k, v, dout;
  vector<int> qpos, skip;
  vector<uint8_t> valid;
};

// Queries 0..11 are a prompt, 12..19 a first answer and 20..T-1 a second answer that skips the first one's keys
// (a packed DPO pair), in two adjacent runs [12, 16) and [16, 20) so that both runs of key_skip are read, with a few
// padded keys in each sequence.
Inputs make_inputs(const Shape& s, uint32_t seed) {
  Inputs in;
  const size_t nq = size_t(s.B) * s.T * s.NH * s.HD, nk = size_t(s.B) * s.T * s.NKV * s.HD;
  in.q = randu(nq, -1, 1, seed), in.dout = randu(nq, -1, 1, seed + 1);
  in.k = randu(nk, -1, 1, seed + 2), in.v = randu(nk, -1, 1, seed + 3);
  in.qpos.resize(size_t(s.B) * s.T), in.skip.assign(size_t(dpo::kKeySkipInts) * s.B * s.T, 0),
      in.valid.assign(size_t(s.B) * s.T, 1);
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++) {
      const size_t r = size_t(b) * s.T + t;
      in.qpos[r] = t;
      int* k = in.skip.data() + size_t(dpo::kKeySkipInts) * r;
      if (t >= 20) in.qpos[r] = t - 8, k[0] = 12, k[1] = 16, k[2] = 16, k[3] = 20;
    }
  in.valid[3] = 0;
  in.valid[size_t(s.B - 1) * s.T + 15] = 0, in.valid[size_t(s.B - 1) * s.T + 16] = 0;
  return in;
}

// The forward as plain loops over keys in order.
void plain_forward(float* out, float* probs, const Inputs& in, const Shape& s) {
  const int group = s.NH / s.NKV, S = s.T;
  const float scale = float(1.0 / std::sqrt(double(s.HD)));
  vector<float> sc(static_cast<size_t>(S));
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++)
      for (int h = 0; h < s.NH; h++) {
        const size_t bt = size_t(b) * s.T + t, r = bt * s.NH + h;
        const float* qr = in.q.data() + r * s.HD;
        float* o = out + r * s.HD;
        float* pr = probs + ((size_t(b) * s.NH + h) * s.T + t) * S;
        const int* k = in.skip.data() + size_t(dpo::kKeySkipInts) * bt;
        const int last = std::min(in.qpos[bt] + (k[1] - k[0]) + (k[3] - k[2]), S - 1);
        auto attends = [&](int j) {
          return (j < k[0] || j >= k[1]) && (j < k[2] || j >= k[3]) && in.valid[size_t(b) * S + j];
        };
        auto key = [&](const vector<float>& a, int j) {
          return a.data() + ((size_t(b) * S + j) * s.NKV + h / group) * s.HD;
        };
        std::fill(o, o + s.HD, 0.0f), std::fill(pr, pr + S, 0.0f);
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j <= last; j++)
          if (attends(j)) sc[size_t(j)] = cpu::dot16(qr, key(in.k, j), s.HD) * scale, mx = std::max(mx, sc[size_t(j)]);
        for (int j = 0; j <= last; j++)
          if (attends(j)) sc[size_t(j)] = std::exp(sc[size_t(j)] - mx), sum += sc[size_t(j)];
        for (int j = 0; j <= last; j++)
          if (attends(j)) pr[j] = sc[size_t(j)] / sum, cpu::axpy(o, pr[j], key(in.v, j), s.HD);
      }
}

// The backward as plain loops: per query row ds and dq, then per key dk and dv over the group's heads and t in order.
void plain_backward(float* dq, float* dk, float* dv, const float* probs, const Inputs& in, const Shape& s) {
  const int group = s.NH / s.NKV, S = s.T;
  const float scale = float(1.0 / std::sqrt(double(s.HD)));
  vector<float> ds(size_t(s.B) * s.NH * s.T * S, 0.0f), acc(size_t(s.HD)), accv(size_t(s.HD));
  auto row = [&](const vector<float>& a, int b, int j, int kvh) {
    return a.data() + ((size_t(b) * S + j) * s.NKV + kvh) * s.HD;
  };
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++)
      for (int h = 0; h < s.NH; h++) {
        const size_t r = (size_t(b) * s.T + t) * s.NH + h, at = ((size_t(b) * s.NH + h) * s.T + t) * S;
        const float* pr = probs + at;
        float* dsr = ds.data() + at;
        float D = 0.0f;
        for (int j = 0; j < S; j++)
          if (pr[j] != 0.0f)
            dsr[j] = cpu::dot16(in.dout.data() + r * s.HD, row(in.v, b, j, h / group), s.HD),
            D = cpu::mul_add(pr[j], dsr[j], D);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int j = 0; j < S; j++)
          if (pr[j] != 0.0f)
            dsr[j] = pr[j] * (dsr[j] - D), cpu::axpy(acc.data(), dsr[j], row(in.k, b, j, h / group), s.HD);
        cpu::axpy(dq + r * s.HD, scale, acc.data(), s.HD);
      }
  for (int b = 0; b < s.B; b++)
    for (int kvh = 0; kvh < s.NKV; kvh++)
      for (int j = 0; j < S; j++) {
        std::fill(acc.begin(), acc.end(), 0.0f), std::fill(accv.begin(), accv.end(), 0.0f);
        bool touched = false;
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
          for (int t = 0; t < s.T; t++) {
            const size_t i = ((size_t(b) * s.NH + h) * s.T + t) * S + j, r = (size_t(b) * s.T + t) * s.NH + h;
            if (probs[i] == 0.0f) continue;
            cpu::axpy(acc.data(), ds[i], in.q.data() + r * s.HD, s.HD);
            cpu::axpy(accv.data(), probs[i], in.dout.data() + r * s.HD, s.HD);
            touched = true;
          }
        if (!touched) continue;
        const size_t off = ((size_t(b) * S + j) * s.NKV + kvh) * s.HD;
        cpu::axpy(dk + off, scale, acc.data(), s.HD);
        for (int d = 0; d < s.HD; d++) dv[off + size_t(d)] += accv[size_t(d)];
      }
}

}  // namespace

TEST_CASE(attention_is_the_key_order_loop_bit_for_bit) {
  // Head sizes: the any-size path (8, 40: a 16-lane tail, 256) and the unrolled ones (16, 64, 80, 128); GQA 4/2 and
  // MHA; rows with 1 to 23 attended keys, so four-key groups with every remainder; 31 and 29 keys, so the key
  // gradients' tiles of three keys leave one and two keys to the single-key path.
  const Shape shapes[] = {{2, 30, 4, 2, 8},   {2, 30, 4, 2, 40}, {2, 30, 4, 4, 16},
                          {2, 30, 4, 2, 64},  {1, 30, 2, 1, 80}, {2, 30, 4, 2, 128},
                          {1, 24, 2, 2, 256}, {2, 31, 4, 2, 64}, {1, 29, 2, 2, 16}};
  uint32_t seed = 700;
  for (const Shape& s : shapes) {
    const Inputs in = make_inputs(s, seed += 10);
    const size_t nq = in.q.size(), nk = in.k.size(), np = size_t(s.B) * s.NH * s.T * s.T;
    vector<float> want_out(nq), want_p(np), want_dq(nq, 0.0f), want_dk(nk, 0.0f), want_dv(nk, 0.0f);
    plain_forward(want_out.data(), want_p.data(), in, s);
    plain_backward(want_dq.data(), want_dk.data(), want_dv.data(), want_p.data(), in, s);
    for (int threads : {1, 2}) {
      set_cpu_thread_count(threads);
      vector<float> out(nq), p(np), dq(nq, 0.0f), dk(nk, 0.0f), dv(nk, 0.0f);
      cpu::attention_forward(out.data(), p.data(), in.q.data(), in.k.data(), in.v.data(), in.qpos.data(),
                             in.valid.data(), s.B, s.T, s.T, s.NH, s.NKV, s.HD, in.skip.data());
      cpu::attention_backward(dq.data(), dk.data(), dv.data(), in.dout.data(), p.data(), in.q.data(), in.k.data(),
                              in.v.data(), s.B, s.T, s.T, s.NH, s.NKV, s.HD);
      std::printf("  HD=%d NH=%d NKV=%d threads=%d\n", s.HD, s.NH, s.NKV, threads);
      CHECK(same_bits(out, want_out));
      CHECK(same_bits(p, want_p));
      CHECK(same_bits(dq, want_dq));
      CHECK(same_bits(dk, want_dk));
      CHECK(same_bits(dv, want_dv));
    }
  }
  set_cpu_thread_count(0);
}

TEST_MAIN()
