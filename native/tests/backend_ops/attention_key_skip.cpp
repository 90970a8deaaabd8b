// Cases of Backend::has_attention_key_skip and attention_key_skip (prompt-prefix sharing,
// docs/performance.md#prompt-prefix-sharing): two sequences that share their first L positions, run apart with
// attention() and packed into one row [shared, first rest, second rest] with the second's keys skipping the first's
// rest, must give the same outputs and probabilities bit for bit on every host backend. CUDA does not implement it
// (its callers keep the unshared layout), and must say so.
#include <cstdint>
#include <cstdio>
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

OP_CASE(has_attention_key_skip) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all())
    if (t.be->has_attention_key_skip() == t.is_cuda()) {
      std::printf("  %s: has_attention_key_skip() is %s\n", t.name.c_str(), t.is_cuda() ? "true" : "false");
      failures()++;
    }
}

OP_CASE(attention_key_skip) {
  if (!ctx.eval()) return;
  struct Case {
    int T, L, len0, len1, NH, NKV, HD;
  };
  // Shared prefix lengths 0, 1 and most of the sequence; padded tails on either side; GQA and MHA.
  const Case cases[] = {
      {7, 3, 6, 7, 4, 2, 8}, {5, 1, 5, 3, 2, 2, 16}, {9, 0, 9, 8, 4, 1, 8}, {12, 10, 11, 12, 3, 3, 5}};
  uint32_t seed = 900;
  for (const Case& c : cases) {
    const int T = c.T, L = c.L, QD = c.NH * c.HD, KVD = c.NKV * c.HD, TP = 2 * T - L;
    vector<float> q = randu(size_t(2) * T * QD, -1, 1, seed++), k = randu(size_t(2) * T * KVD, -1, 1, seed++),
                  v = randu(size_t(2) * T * KVD, -1, 1, seed++);
    // Sequence 1's first L rows are sequence 0's (the shared prompt).
    for (int t = 0; t < L; t++) {
      std::copy_n(q.begin() + size_t(t) * QD, QD, q.begin() + size_t(T + t) * QD);
      std::copy_n(k.begin() + size_t(t) * KVD, KVD, k.begin() + size_t(T + t) * KVD);
      std::copy_n(v.begin() + size_t(t) * KVD, KVD, v.begin() + size_t(T + t) * KVD);
    }
    vector<int> qpos(size_t(2) * T);
    vector<uint8_t> valid(size_t(2) * T);
    for (int t = 0; t < T; t++) {
      qpos[size_t(t)] = qpos[size_t(T + t)] = t;
      valid[size_t(t)] = t < c.len0, valid[size_t(T + t)] = t < c.len1;
    }
    // Packed: row r < T is sequence 0's row r; row T + (t - L) is sequence 1's row t >= L, skipping keys [L, T).
    const size_t np = static_cast<size_t>(TP);
    vector<int> from(np), ppos(np), skip(2 * np, 0);
    vector<uint8_t> pvalid(np);
    vector<float> pq(np * QD), pk(np * KVD), pv(np * KVD);
    for (int r = 0; r < TP; r++) {
      const int src = r < T ? r : T + L + (r - T);
      from[size_t(r)] = src;
      ppos[size_t(r)] = qpos[size_t(src)];
      pvalid[size_t(r)] = valid[size_t(src)];
      if (r >= T) skip[2 * size_t(r)] = L, skip[2 * size_t(r) + 1] = T;
      std::copy_n(q.begin() + size_t(src) * QD, QD, pq.begin() + size_t(r) * QD);
      std::copy_n(k.begin() + size_t(src) * KVD, KVD, pk.begin() + size_t(r) * KVD);
      std::copy_n(v.begin() + size_t(src) * KVD, KVD, pv.begin() + size_t(r) * KVD);
    }
    const std::string what = "T " + std::to_string(T) + " L " + std::to_string(L);
    for (const Target& t : ctx.hosts()) {
      Arena a(*t.be);
      float* out = a.alloc(q.size());
      float* probs = a.alloc(size_t(2) * c.NH * T * T);
      t.be->attention(out, probs, a.put(q), a.put(k), a.put(v), a.put(qpos), a.put(valid), 2, T, T, c.NH, c.NKV, c.HD);
      float* pout = a.alloc(pq.size());
      float* pprobs = a.alloc(size_t(c.NH) * TP * TP);
      t.be->attention_key_skip(pout, pprobs, a.put(pq), a.put(pk), a.put(pv), a.put(ppos), a.put(pvalid), a.put(skip),
                               1, TP, TP, c.NH, c.NKV, c.HD);
      const vector<float> o = a.get(out, q.size()), p = a.get(probs, size_t(2) * c.NH * T * T);
      const vector<float> po = a.get(pout, pq.size()), pp = a.get(pprobs, size_t(c.NH) * TP * TP);
      // Each packed row against its unshared twin: outputs, and probabilities key by key (zero on skipped keys).
      vector<float> want_o, got_o, want_p, got_p;
      for (int r = 0; r < TP; r++) {
        const int src = from[size_t(r)], b = src / T, tq = src % T;
        want_o.insert(want_o.end(), o.begin() + size_t(src) * QD, o.begin() + size_t(src + 1) * QD);
        got_o.insert(got_o.end(), po.begin() + size_t(r) * QD, po.begin() + size_t(r + 1) * QD);
        for (int h = 0; h < c.NH; h++)
          for (int s = 0; s < TP; s++) {
            const float got = pp[(size_t(h) * TP + r) * TP + s];
            const bool skipped = s >= skip[2 * size_t(r)] && s < skip[2 * size_t(r) + 1];
            const int key = s < T ? s : L + (s - T);  // the key's position in sequence b
            const bool own = skipped ? false : (b == 0 ? s < T : (s < L || s >= T));
            got_p.push_back(got);
            want_p.push_back(own ? p[((size_t(b) * c.NH + h) * T + tq) * T + size_t(key)] : 0.0f);
          }
      }
      check_bits(t.name + " attention_key_skip out " + what, got_o, want_o);
      check_bits(t.name + " attention_key_skip probs " + what, got_p, want_p);
    }
  }
}
