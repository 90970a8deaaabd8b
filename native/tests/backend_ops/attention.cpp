// Cases of Backend::attention, attention_backward and attention_decode (causal GQA against a key store with absolute
// query positions and a key mask): the host backends against the double reference (probs rows sum to 1, masked and
// future keys exactly 0, a query with no key gives zeros), the gradients against finite differences, decode equal
// to the prefill pass bit for bit on every backend, and CUDA against the CPU: rtol 1e-5 forward (2e-5 for dq, dk,
// where ds = p (dp - D) subtracts sums of other orders), deterministic, a sequence or a query alone and a longer
// store giving the same bits, and the shared-memory opt-in at the 48 KiB boundary.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

struct AttnOut {
  vector<float> out, probs;
};

// valid: empty = no key mask; with_probs: ask for probs (B,NH,T,S).
AttnOut run_attention(Backend& be, const vector<float>& q, const vector<float>& k, const vector<float>& v,
                      const vector<int>& qpos, const vector<uint8_t>& valid, const AttnShape& s,
                      bool with_probs = true) {
  Arena a(be);
  float* out = a.alloc(q.size());
  const size_t np = size_t(s.B) * s.NH * s.T * s.S;
  float* probs = with_probs ? a.alloc(np) : nullptr;
  be.attention(out, probs, a.put(q), a.put(k), a.put(v), a.put(qpos), valid.empty() ? nullptr : a.put(valid), s.B, s.T,
               s.S, s.NH, s.NKV, s.HD);
  return {a.get(out, q.size()), with_probs ? a.get(probs, np) : vector<float>()};
}

struct AttnGrads {
  vector<float> dq, dk, dv;
};

// Accumulates into init's gradients (an empty one passes null).
AttnGrads run_attention_backward(Backend& be, const AttnGrads& init, const vector<float>& dout,
                                 const vector<float>& probs, const vector<float>& q, const vector<float>& k,
                                 const vector<float>& v, const AttnShape& s) {
  Arena a(be);
  float* dq = init.dq.empty() ? nullptr : a.put(init.dq);
  float* dk = init.dk.empty() ? nullptr : a.put(init.dk);
  float* dv = init.dv.empty() ? nullptr : a.put(init.dv);
  be.attention_backward(dq, dk, dv, a.put(dout), a.put(probs), a.put(q), a.put(k), a.put(v), s.B, s.T, s.S, s.NH, s.NKV,
                        s.HD);
  AttnGrads g;
  if (dq) g.dq = a.get(dq, init.dq.size());
  if (dk) g.dk = a.get(dk, init.dk.size());
  if (dv) g.dv = a.get(dv, init.dv.size());
  return g;
}

// ---- the parity data of the CUDA checks ----

struct AttnCase {
  const char* name;
  AttnShape s;
  bool masked;  // use key_valid
};

struct AttnData {
  vector<float> q, k, v;
  vector<int> qpos;
  vector<uint8_t> valid;  // empty when the case is not masked
};

// Random q/k/v; keys the case never attends (past every qpos, or invalid) hold NaN so any read of them shows.
AttnData make_attn(const AttnCase& c, uint32_t seed) {
  const AttnShape& s = c.s;
  AttnData d;
  d.q = randn(size_t(s.B) * s.T * s.NH * s.HD, 1.0f, seed);
  d.k = randn(size_t(s.B) * s.S * s.NKV * s.HD, 1.0f, seed + 1);
  d.v = randn(d.k.size(), 1.0f, seed + 2);
  d.qpos.resize(size_t(s.B) * s.T);
  vector<uint8_t> valid(size_t(s.B) * s.S, 1);
  for (int b = 0; b < s.B; b++) {
    // Sequence b's queries sit at the end of its first S - 3b positions (decode-like offsets), clamped at 0.
    const int end = std::max(s.S - 3 * b, s.T);
    for (int t = 0; t < s.T; t++) d.qpos[size_t(b) * s.T + t] = end - s.T + t;
    if (c.masked)
      for (int j = 0; j < std::min(2 * b, s.S); j++) valid[size_t(b) * s.S + j] = 0;  // left padding of 2b keys
  }
  if (c.masked && s.B > 0 && s.S > 4) valid[size_t(s.B - 1) * s.S + size_t(s.S / 2)] = 0;  // a hole in the middle
  if (c.masked && s.B > 1 && s.T > 0) d.qpos[size_t(s.T)] = 1;  // (b=1, t=0) sees only padded keys: zeros
  if (s.B > 0 && s.T > 1) d.qpos[1] = -1;                        // (b=0, t=1): no key at all: zeros
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int b = 0; b < s.B; b++) {
    int maxpos = -1;
    for (int t = 0; t < s.T; t++) maxpos = std::max(maxpos, d.qpos[size_t(b) * s.T + t]);
    for (int j = 0; j < s.S; j++) {
      if (j <= maxpos && valid[size_t(b) * s.S + j]) continue;
      for (int i = 0; i < s.NKV * s.HD; i++) {
        d.k[(size_t(b) * s.S + j) * s.NKV * s.HD + i] = nan;
        d.v[(size_t(b) * s.S + j) * s.NKV * s.HD + i] = nan;
      }
    }
  }
  if (c.masked) d.valid = valid;
  return d;
}

const AttnCase kAttnCases[] = {
    {"prefill HD=8 GQA 8/4 padded", {3, 6, 6, 8, 4, 8}, true},
    {"cached HD=128 GQA 8/4 masked", {2, 5, 21, 8, 4, 128}, true},
    {"decode HD=128 GQA 8/2", {3, 1, 40, 8, 2, 128}, false},
    {"HD=80 MHA", {2, 4, 9, 3, 3, 80}, true},
    {"HD=256 MQA", {1, 3, 7, 2, 1, 256}, false},
};

void print_case(const AttnCase& c) {
  std::printf("  %s: B=%d T=%d S=%d NH=%d NKV=%d HD=%d\n", c.name, c.s.B, c.s.T, c.s.S, c.s.NH, c.s.NKV, c.s.HD);
}

void cuda_forward_parity(const OpContext& ctx, Backend& g) {
  for (const AttnCase& c : kAttnCases) {
    print_case(c);
    const AttnShape& s = c.s;
    const AttnData d = make_attn(c, 41u + s.HD);
    const AttnOut want = run_attention(ctx.cpu(), d.q, d.k, d.v, d.qpos, d.valid, s);
    const AttnOut got = run_attention(g, d.q, d.k, d.v, d.qpos, d.valid, s);
    check_near("out", got.out, want.out);
    check_near("probs", got.probs, want.probs);
    // Deterministic, and probs == null gives the same out.
    check_bits("out without probs", run_attention(g, d.q, d.k, d.v, d.qpos, d.valid, s, false).out, got.out);
    // The last sequence alone (B = 1) gives the batch's bits.
    const int b = s.B - 1;
    const size_t qrow = size_t(s.T) * s.NH * s.HD, krow = size_t(s.S) * s.NKV * s.HD;
    const vector<float> k1 = slice(d.k, b * krow, krow), v1 = slice(d.v, b * krow, krow);
    const vector<uint8_t> val1 = c.masked ? slice(d.valid, size_t(b) * s.S, size_t(s.S)) : vector<uint8_t>();
    const AttnShape s1{1, s.T, s.S, s.NH, s.NKV, s.HD};
    check_bits("sequence alone",
               run_attention(g, slice(d.q, b * qrow, qrow), k1, v1, slice(d.qpos, size_t(b) * s.T, size_t(s.T)), val1,
                             s1, false)
                   .out,
               slice(got.out, b * qrow, qrow));
    // One query at a time (T = 1, as cached decode) gives the batch's bits too.
    const size_t one = size_t(s.NH) * s.HD;
    for (int t = 0; t < s.T; t++)
      check_bits("query " + std::to_string(t) + " alone",
                 run_attention(g, slice(d.q, b * qrow + size_t(t) * one, one), k1, v1,
                               slice(d.qpos, size_t(b) * s.T + t, 1), val1, {1, 1, s.S, s.NH, s.NKV, s.HD}, false)
                     .out,
                 slice(got.out, b * qrow + size_t(t) * one, one));
  }
  // A store with more (never attended) slots past qpos gives the same bits: decode into a preallocated cache.
  const AttnCase c{"decode", {1, 2, 30, 8, 4, 128}, false};
  const AttnData d = make_attn(c, 77u);
  const int S2 = 45;
  vector<float> k2(d.k), v2(d.v);
  k2.resize(size_t(S2) * c.s.NKV * c.s.HD, std::numeric_limits<float>::quiet_NaN());
  v2.resize(k2.size(), std::numeric_limits<float>::quiet_NaN());
  const vector<float> a = run_attention(g, d.q, d.k, d.v, d.qpos, {}, c.s, false).out;
  AttnShape longer = c.s;
  longer.S = S2;
  check_bits("longer store", run_attention(g, d.q, k2, v2, d.qpos, {}, longer, false).out, a);
  CHECK(std::all_of(a.begin(), a.end(), [](float x) { return std::isfinite(x); }));
}

void cuda_backward_parity(const OpContext& ctx, Backend& g) {
  for (const AttnCase& c : kAttnCases) {
    print_case(c);
    const AttnShape& s = c.s;
    const AttnData d = make_attn(c, 51u + s.HD);
    const vector<float> probs = run_attention(ctx.cpu(), d.q, d.k, d.v, d.qpos, d.valid, s).probs;
    const auto dout = randn(d.q.size(), 1.0f, 52u + s.HD);
    // Accumulate into small nonzero gradients; the NaN slots of k/v get finite dk/dv starts that must stay as they
    // are. The GPU gets the CPU's probs, so both backward passes see the same inputs.
    const AttnGrads init{randn(d.q.size(), 0.05f, 53u + s.HD), randn(d.k.size(), 0.05f, 54u + s.HD),
                         randn(d.k.size(), 0.05f, 55u + s.HD)};
    const AttnGrads want = run_attention_backward(ctx.cpu(), init, dout, probs, d.q, d.k, d.v, s);
    const AttnGrads got = run_attention_backward(g, init, dout, probs, d.q, d.k, d.v, s);
    // ds = p (dp - D) subtracts two sums computed in different orders; rms-scaled atol covers the cancellation.
    check_near("dq", got.dq, want.dq, 2e-5);
    check_near("dk", got.dk, want.dk, 2e-5);
    check_near("dv", got.dv, want.dv);
    // Deterministic; and dq alone (no scratch path), dk alone, dv alone give the same bits.
    const AttnGrads again = run_attention_backward(g, init, dout, probs, d.q, d.k, d.v, s);
    check_bits("dq again", again.dq, got.dq);
    check_bits("dk again", again.dk, got.dk);
    check_bits("dv again", again.dv, got.dv);
    check_bits("dq alone", run_attention_backward(g, {init.dq, {}, {}}, dout, probs, d.q, d.k, d.v, s).dq, got.dq);
    check_bits("dk alone", run_attention_backward(g, {{}, init.dk, {}}, dout, probs, d.q, d.k, d.v, s).dk, got.dk);
    check_bits("dv alone", run_attention_backward(g, {{}, {}, init.dv}, dout, probs, d.q, d.k, d.v, s).dv, got.dv);
  }
}

// The row kernels' dynamic shared memory is (HD + S + 256) floats; with HD = 128 and S = 11904 that is exactly
// 48 KiB, and the kernels' static __shared__ scratch comes on top: the launcher must opt in above 48 KiB in total,
// not only when the dynamic part alone exceeds it (else the launch fails with cudaErrorInvalidValue).
void cuda_smem_boundary(const OpContext& ctx, Backend& g, bool backward) {
  for (const int S : {11904, 11905, 12300}) {
    const AttnCase c{"smem boundary", {1, 2, S, 2, 1, 128}, false};
    print_case(c);
    const AttnData d = make_attn(c, 97u + S);
    const AttnOut want = run_attention(ctx.cpu(), d.q, d.k, d.v, d.qpos, {}, c.s);
    if (!backward) {
      const AttnOut got = run_attention(g, d.q, d.k, d.v, d.qpos, {}, c.s);
      check_near("out", got.out, want.out);
      check_near("probs", got.probs, want.probs);
      continue;
    }
    const auto dout = randn(d.q.size(), 1.0f, 98u + S);
    const AttnGrads zero{vector<float>(d.q.size(), 0.0f), vector<float>(d.k.size(), 0.0f),
                         vector<float>(d.k.size(), 0.0f)};
    const AttnGrads w = run_attention_backward(ctx.cpu(), zero, dout, want.probs, d.q, d.k, d.v, c.s);
    const AttnGrads r = run_attention_backward(g, zero, dout, want.probs, d.q, d.k, d.v, c.s);
    check_near("dq", r.dq, w.dq, 2e-5);
    check_near("dk", r.dk, w.dk, 2e-5);
    check_near("dv", r.dv, w.dv);
  }
}

// Queries at qpos = qoff + t (decode against a cache when T < S); a mask drops random keys.
struct HostCase {
  AttnShape s;
  bool mask;
  int qoff;
};

struct Qkv {
  vector<float> q, k, v;
};

// Uniform q, k, v in [-1, 1] for shape a, from the next three seeds.
Qkv random_qkv(const AttnShape& a, uint32_t& seed) {
  Qkv r;
  r.q = randu(size_t(a.B) * a.T * a.NH * a.HD, -1, 1, seed++);
  r.k = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, seed++);
  r.v = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, seed++);
  return r;
}

vector<int> offset_positions(const HostCase& c) {
  vector<int> qpos(size_t(c.s.B) * c.s.T);
  for (int b = 0; b < c.s.B; b++)
    for (int t = 0; t < c.s.T; t++) qpos[size_t(b) * c.s.T + t] = c.qoff + t;
  return qpos;
}

}  // namespace

OP_CASE(attention) {
  if (!ctx.eval()) return;
  const HostCase cases[] = {
      {{1, 1, 1, 1, 1, 8}, false, 0},   {{2, 5, 5, 8, 4, 8}, false, 0}, {{2, 5, 5, 8, 4, 8}, true, 0},
      {{3, 1, 9, 8, 4, 8}, true, 8},    {{2, 2, 7, 4, 2, 16}, true, 5}, {{1, 6, 6, 2, 2, 64}, false, 0},
      {{2, 3, 40, 4, 1, 24}, true, 37}, {{1, 4, 4, 3, 3, 5}, false, 0},
  };
  uint32_t seed = 500;
  for (const HostCase& c : cases) {
    const AttnShape& a = c.s;
    const auto [q, k, v] = random_qkv(a, seed);
    const vector<int> qpos = offset_positions(c);
    vector<uint8_t> valid;
    if (c.mask) {
      valid.assign(size_t(a.B) * a.S, 1);
      std::mt19937 rng(seed++);
      for (auto& m : valid) m = (rng() % 4) != 0;
      valid[0] = 0;  // the first query of sequence 0 (qpos 0 in prefill) may then attend nothing
    }
    const uint8_t* vp = c.mask ? valid.data() : nullptr;
    vector<double> ref;
    ref_attention(ref, to_d(q), to_d(k), to_d(v), qpos, vp, a);
    const vector<double> scale(ref.size(), 1.0);  // |out| <= max |v| = 1
    for (const Target& t : ctx.hosts()) {
      const AttnOut r = run_attention(*t.be, q, k, v, qpos, valid, a);
      check_scaled(t.name + " attention", r.out, ref, scale, 1e-6);
      // probs: rows sum to 1 (or are all zero when nothing is attendable), masked / future keys exactly 0
      for (int b = 0; b < a.B; b++)
        for (int h = 0; h < a.NH; h++)
          for (int tq = 0; tq < a.T; tq++) {
            double sum = 0;
            bool any = false;
            for (int s = 0; s < a.S; s++) {
              const float p = r.probs[((size_t(b) * a.NH + h) * a.T + tq) * a.S + s];
              const bool ok = s <= qpos[size_t(b) * a.T + tq] && (!vp || vp[size_t(b) * a.S + s]);
              if (!ok) CHECK(p == 0.0f);
              any = any || ok;
              sum += p;
            }
            if (any) CHECK_CLOSE(sum, 1.0, 1e-6, 0);
            else CHECK(sum == 0.0);
          }
    }
  }
  // A query whose keys are all padded outputs zeros (and zero probs).
  {
    const int HD = 8;
    const auto q = randu(HD, -1, 1, 1), k = randu(3 * HD, -1, 1, 2), v = randu(3 * HD, -1, 1, 3);
    for (const Target& t : ctx.hosts()) {
      const AttnOut r = run_attention(*t.be, q, k, v, {1}, {0, 0, 1}, {1, 1, 3, 1, 1, HD});
      for (float o : r.out) CHECK(o == 0.0f);
      for (float p : r.probs) CHECK(p == 0.0f);
    }
  }
  if (Backend* g = ctx.cuda_or_skip()) {
    cuda_forward_parity(ctx, *g);
    cuda_smem_boundary(ctx, *g, false);
  }
}

OP_CASE(attention_backward) {
  if (ctx.grad()) {
    const HostCase cases[] = {
        {{2, 3, 5, 4, 2, 8}, true, 2}, {{1, 4, 4, 8, 4, 8}, false, 0}, {{2, 2, 6, 2, 1, 5}, true, 4}};
    uint32_t seed = 900;
    for (const HostCase& c : cases) {
      const AttnShape& a = c.s;
      const auto [q, k, v] = random_qkv(a, seed);
      const auto G = randu(q.size(), -1, 1, seed++);
      const vector<int> qpos = offset_positions(c);
      vector<uint8_t> valid;
      if (c.mask) {
        valid.assign(size_t(a.B) * a.S, 1);
        valid[1] = valid[size_t(a.S) + 2] = 0;
      }
      const uint8_t* vp = c.mask ? valid.data() : nullptr;
      auto qd = to_d(q), kd = to_d(k), vd = to_d(v);
      vector<double> out;
      auto loss = [&] {
        ref_attention(out, qd, kd, vd, qpos, vp, a);
        return dot_loss(out, G);
      };
      const auto gq = numeric_grad(qd, loss), gk = numeric_grad(kd, loss), gv = numeric_grad(vd, loss);
      const AttnGrads init{randu(q.size(), -1, 1, seed++), randu(k.size(), -1, 1, seed++),
                           randu(v.size(), -1, 1, seed++)};
      for (const Target& t : ctx.all()) {
        const vector<float> probs = run_attention(*t.be, q, k, v, qpos, valid, a).probs;
        const AttnGrads r = run_attention_backward(*t.be, init, G, probs, q, k, v, a);
        check_grad(t.name + " attention dq", minus(r.dq, init.dq), gq);
        check_grad(t.name + " attention dk", minus(r.dk, init.dk), gk);
        check_grad(t.name + " attention dv", minus(r.dv, init.dv), gv);
      }
    }
  }
  if (!ctx.eval()) return;
  if (Backend* g = ctx.cuda_or_skip()) {
    cuda_backward_parity(ctx, *g);
    cuda_smem_boundary(ctx, *g, true);
  }
}

// Decoding row r against sequence seq[r] of a KV cache at positions 0..pos[r]: on every backend, the CPU's
// attention(B=1, T=1, S=pos+1) on that sequence (bitwise on the host backends, within 1e-5 on CUDA) and bit for bit
// the backend's own prefill attention on it.
// Cache slots past every row's position hold NaN, so any read of them shows.
OP_CASE(attention_decode) {
  if (!ctx.eval()) return;
  struct Case {
    int M, Bc, S, NH, NKV, HD;
  };
  const vector<Case> host_cases = {{1, 1, 7, 4, 2, 64}, {3, 2, 9, 4, 2, 8}, {16, 3, 40, 8, 2, 128}};
  const vector<Case> gpu_cases = {{1, 1, 7, 4, 2, 64},
                                  {1, 3, 40, 8, 2, 128},
                                  {16, 3, 40, 8, 2, 128},
                                  {16, 16, 33, 6, 3, 80},
                                  {16, 5, 300, 2, 1, 256}};
  Backend* g = ctx.cuda_or_skip();
  vector<std::pair<Target, vector<Case>>> runs;
  for (const Target& t : ctx.hosts()) runs.push_back({t, host_cases});
  if (g) runs.push_back({Target{"cuda", g}, gpu_cases});
  for (const auto& [target, cases] : runs)
    for (const Case c : cases) {
      Backend& be = *target.be;
      std::printf("  %s: M=%d Bc=%d S=%d NH=%d NKV=%d HD=%d\n", target.name.c_str(), c.M, c.Bc, c.S, c.NH, c.NKV, c.HD);
      const size_t qrow = size_t(c.NH) * c.HD, krow = size_t(c.NKV) * c.HD, seqn = size_t(c.S) * krow;
      const auto q = randn(size_t(c.M) * qrow, 1.0f, 61u + c.HD + c.M);
      auto kc = randn(size_t(c.Bc) * seqn, 1.0f, 62u + c.HD + c.M);
      auto vc = randn(kc.size(), 1.0f, 63u + c.HD + c.M);
      auto seq = randi(size_t(c.M), 0, c.Bc - 1, 64u + c.M);
      auto pos = randi(size_t(c.M), 0, c.S - 1, 65u + c.M);
      pos[0] = c.M > 1 ? 0 : c.S - 1;  // the first and the last position
      if (c.M > 1) pos[size_t(c.M) - 1] = c.S - 1;
      vector<int> maxpos(static_cast<size_t>(c.Bc), -1);
      for (int r = 0; r < c.M; r++)
        maxpos[size_t(seq[size_t(r)])] = std::max(maxpos[size_t(seq[size_t(r)])], pos[size_t(r)]);
      for (int b = 0; b < c.Bc; b++)
        for (int s = maxpos[size_t(b)] + 1; s < c.S; s++)
          for (size_t i = 0; i < krow; i++) {
            kc[size_t(b) * seqn + size_t(s) * krow + i] = std::numeric_limits<float>::quiet_NaN();
            vc[size_t(b) * seqn + size_t(s) * krow + i] = std::numeric_limits<float>::quiet_NaN();
          }
      Arena a(be);
      const float* dq = a.put(q);
      const float* dk = a.put(kc);
      const float* dv = a.put(vc);
      const int* dpos = a.put(pos);
      float* out = a.alloc<float>(q.size());
      be.attention_decode(out, dq, dk, dv, a.put(seq), dpos, c.M, c.S, c.NH, c.NKV, c.HD);
      const auto got = a.get(out, q.size());
      float* one = a.alloc<float>(qrow);
      for (int r = 0; r < c.M; r++) {
        const int b = seq[size_t(r)], p = pos[size_t(r)];
        const vector<float> row = slice(got, r * qrow, qrow);
        const AttnShape s1{1, 1, p + 1, c.NH, c.NKV, c.HD};
        const vector<float> want =
            run_attention(ctx.cpu(), slice(q, r * qrow, qrow), slice(kc, b * seqn, (p + 1) * krow),
                          slice(vc, b * seqn, (p + 1) * krow), {p}, {}, s1, false)
                .out;
        if (target.is_cuda()) check_near("decode vs cpu", row, want);
        else check_bits(target.name + " decode vs cpu", row, want);  // the same kernel
        // The backend's own prefill attention on the same cache gives the same bits (decode == prefill).
        be.attention(one, nullptr, dq + size_t(r) * qrow, dk + size_t(b) * seqn, dv + size_t(b) * seqn, dpos + r,
                     nullptr, 1, 1, p + 1, c.NH, c.NKV, c.HD);
        check_bits(target.name + " decode vs prefill", row, a.get(one, qrow));
      }
    }
  // Two sequences of length T in a cache of capacity S: decoding position t of sequence b gives what the causal
  // full-sequence pass gives at (b, t), bit for bit, on the host backends.
  const int B = 2, T = 7, S = 9, NH = 4, NKV = 2, HD = 8, QD = NH * HD, KVD = NKV * HD;
  auto q = randn(B * T * QD, 1.0f, 6), k = randn(B * T * KVD, 1.0f, 7), v = randn(B * T * KVD, 1.0f, 8);
  vector<int> pos(B * T);
  for (int i = 0; i < B * T; i++) pos[size_t(i)] = i % T;
  vector<float> kc(B * S * KVD, 0.0f), vc(B * S * KVD, 0.0f);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      std::copy_n(&k[size_t((b * T + t) * KVD)], KVD, &kc[size_t((b * S + t) * KVD)]);
      std::copy_n(&v[size_t((b * T + t) * KVD)], KVD, &vc[size_t((b * S + t) * KVD)]);
    }
  // Rows: (b=1, t=6), (b=0, t=3), (b=1, t=0).
  const vector<int> seq = {1, 0, 1}, dpos = {6, 3, 0};
  vector<float> qrows(3 * QD);
  for (int r = 0; r < 3; r++) std::copy_n(&q[size_t((seq[r] * T + dpos[r]) * QD)], QD, &qrows[size_t(r * QD)]);
  for (const Target& t : ctx.hosts()) {
    const vector<float> full = run_attention(*t.be, q, k, v, pos, {}, {B, T, T, NH, NKV, HD}, false).out;
    Arena a(*t.be);
    float* out = a.alloc(qrows.size());
    t.be->attention_decode(out, a.put(qrows), a.put(kc), a.put(vc), a.put(seq), a.put(dpos), 3, S, NH, NKV, HD);
    const vector<float> got = a.get(out, qrows.size());
    for (int r = 0; r < 3; r++)
      check_bits(t.name + " decode row " + std::to_string(r) + " vs full pass", slice(got, size_t(r) * QD, QD),
                 slice(full, size_t(seq[r] * T + dpos[r]) * QD, QD));
  }
}
