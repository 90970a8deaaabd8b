// Cases of Backend::has_attention_key_skip and attention_key_skip (prompt-prefix sharing,
// docs/performance.md#prompt-prefix-sharing): sequences that share leading positions, run apart with attention() and
// packed into one row, each packed row skipping the keys of the other sequences (one run: a pair [shared, first
// rest, second rest]; two runs: a chain of three sequences whose last two share more than all three), must give the
// same outputs and probabilities bit for bit on every host backend. CUDA does not implement it (its callers keep the
// unshared layout), and must say so.
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <initializer_list>
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

namespace {

// A packed row: which (sequence, position) each packed row computes, the packed row of every (sequence, position)
// (shared positions map several to one), and each row's skipped runs.
struct Packing {
  int rows = 0;
  vector<int> seq, pos, skip;  // (rows), (rows), (rows * kKeySkipInts)
  vector<int> row_of;          // (sequences * T), -1 for padding

  void add(int s, int t, std::initializer_list<int> runs, int T) {
    seq.push_back(s), pos.push_back(t);
    vector<int> k(runs);
    k.resize(size_t(kKeySkipInts), 0);
    skip.insert(skip.end(), k.begin(), k.end());
    row_of[size_t(s) * T + t] = rows++;
  }
};

// Sequences 0 and 1 share their first L positions: [shared, 0's rest, 1's rest], 1's rest skipping [L, T).
Packing pair_packing(int T, int L) {
  Packing p;
  p.row_of.assign(size_t(2) * T, -1);
  for (int t = 0; t < T; t++) p.add(0, t, {}, T);
  for (int t = 0; t < L; t++) p.row_of[size_t(T) + t] = t;
  for (int t = L; t < T; t++) p.add(1, t, {L, T}, T);
  return p;
}

// Three sequences of T positions: all share the first L, sequences 1 and 2 the first L2 > L. Chain [L common,
// 0's rest, 1's rest, 2's rest past L2]: 1 skips 0's rest, 2 skips 0's rest and 1's positions past L2.
Packing chain_packing(int T, int L, int L2) {
  Packing p;
  p.row_of.assign(size_t(3) * T, -1);
  for (int t = 0; t < T; t++) p.add(0, t, {}, T);
  for (int s : {1, 2})
    for (int t = 0; t < L; t++) p.row_of[size_t(s) * T + t] = t;
  const int start1 = T;
  for (int t = L; t < T; t++) p.add(1, t, {L, start1}, T);
  for (int t = L; t < L2; t++) p.row_of[size_t(2) * T + t] = p.row_of[size_t(T) + t];
  const int second = start1 + (T - L);
  for (int t = L2; t < T; t++) p.add(2, t, {L, start1, start1 + (L2 - L), second}, T);
  return p;
}

}  // namespace

OP_CASE(attention_key_skip) {
  if (!ctx.eval()) return;
  struct Case {
    int T, L, L2;      // L2 > 0: a chain of three sequences
    int len0, len1, len2;  // valid keys of each sequence (padded tails)
    int NH, NKV, HD;
  };
  // Shared prefix lengths 0, 1 and most of the sequence; padded tails on either side; GQA and MHA; chains with an
  // empty common part, adjacent runs (L2 = L + 0 is not a chain; L2 = L + 1) and long second runs.
  const Case cases[] = {{7, 3, 0, 6, 7, 0, 4, 2, 8},     {5, 1, 0, 5, 3, 0, 2, 2, 16}, {9, 0, 0, 9, 8, 0, 4, 1, 8},
                        {12, 10, 0, 11, 12, 0, 3, 3, 5}, {8, 2, 5, 8, 7, 8, 4, 2, 16}, {9, 0, 1, 9, 9, 6, 2, 1, 8},
                        {10, 3, 4, 10, 10, 10, 4, 4, 5}};
  uint32_t seed = 900;
  for (const Case& c : cases) {
    const int T = c.T, L = c.L, QD = c.NH * c.HD, KVD = c.NKV * c.HD, NS = c.L2 > 0 ? 3 : 2;
    const Packing pk = c.L2 > 0 ? chain_packing(T, L, c.L2) : pair_packing(T, L);
    vector<float> q = randu(size_t(NS) * T * QD, -1, 1, seed++), k = randu(size_t(NS) * T * KVD, -1, 1, seed++),
                  v = randu(size_t(NS) * T * KVD, -1, 1, seed++);
    // Positions that share a packed row get the same q, k and v in every sequence.
    for (int s = 1; s < NS; s++)
      for (int t = 0; t < T; t++) {
        const int owner = pk.seq[size_t(pk.row_of[size_t(s) * T + t])];
        if (owner == s) continue;
        std::copy_n(q.begin() + (size_t(owner) * T + t) * QD, QD, q.begin() + (size_t(s) * T + t) * QD);
        std::copy_n(k.begin() + (size_t(owner) * T + t) * KVD, KVD, k.begin() + (size_t(s) * T + t) * KVD);
        std::copy_n(v.begin() + (size_t(owner) * T + t) * KVD, KVD, v.begin() + (size_t(s) * T + t) * KVD);
      }
    const int lens[3] = {c.len0, c.len1, c.len2};
    vector<int> qpos(size_t(NS) * T);
    vector<uint8_t> valid(size_t(NS) * T);
    for (int s = 0; s < NS; s++)
      for (int t = 0; t < T; t++) qpos[size_t(s) * T + t] = t, valid[size_t(s) * T + t] = t < lens[s];
    const int TP = pk.rows;
    vector<int> ppos(static_cast<size_t>(TP), 0);
    vector<uint8_t> pvalid(static_cast<size_t>(TP));
    vector<float> pq(size_t(TP) * QD), pkk(size_t(TP) * KVD), pv(size_t(TP) * KVD);
    for (int r = 0; r < TP; r++) {
      const size_t src = size_t(pk.seq[size_t(r)]) * T + size_t(pk.pos[size_t(r)]);
      ppos[size_t(r)] = qpos[src];
      pvalid[size_t(r)] = valid[src];
      std::copy_n(q.begin() + src * QD, QD, pq.begin() + size_t(r) * QD);
      std::copy_n(k.begin() + src * KVD, KVD, pkk.begin() + size_t(r) * KVD);
      std::copy_n(v.begin() + src * KVD, KVD, pv.begin() + size_t(r) * KVD);
    }
    const std::string what = "T " + std::to_string(T) + " L " + std::to_string(L) + " L2 " + std::to_string(c.L2);
    for (const Target& t : ctx.hosts()) {
      Arena a(*t.be);
      float* out = a.alloc(q.size());
      float* probs = a.alloc(size_t(NS) * c.NH * T * T);
      t.be->attention(out, probs, a.put(q), a.put(k), a.put(v), a.put(qpos), a.put(valid), NS, T, T, c.NH, c.NKV, c.HD);
      float* pout = a.alloc(pq.size());
      float* pprobs = a.alloc(size_t(c.NH) * TP * TP);
      t.be->attention_key_skip(pout, pprobs, a.put(pq), a.put(pkk), a.put(pv), a.put(ppos), a.put(pvalid),
                               a.put(pk.skip), 1, TP, TP, c.NH, c.NKV, c.HD);
      const vector<float> o = a.get(out, q.size()), p = a.get(probs, size_t(NS) * c.NH * T * T);
      const vector<float> po = a.get(pout, pq.size()), pp = a.get(pprobs, size_t(c.NH) * TP * TP);
      // Each packed row against its unshared twin: outputs, and probabilities key by key (zero on every key that is
      // not one of its own sequence's).
      vector<float> want_o, got_o, want_p, got_p;
      for (int r = 0; r < TP; r++) {
        const int b = pk.seq[size_t(r)], tq = pk.pos[size_t(r)];
        const size_t src = size_t(b) * T + size_t(tq);
        want_o.insert(want_o.end(), o.begin() + src * QD, o.begin() + (src + 1) * QD);
        got_o.insert(got_o.end(), po.begin() + size_t(r) * QD, po.begin() + size_t(r + 1) * QD);
        for (int h = 0; h < c.NH; h++)
          for (int s = 0; s < TP; s++) {
            got_p.push_back(pp[(size_t(h) * TP + r) * TP + s]);
            float want = 0.0f;
            for (int key = 0; key < T; key++)
              if (pk.row_of[size_t(b) * T + key] == s) want = p[((size_t(b) * c.NH + h) * T + tq) * T + size_t(key)];
            want_p.push_back(want);
          }
      }
      check_bits(t.name + " attention_key_skip out " + what, got_o, want_o);
      check_bits(t.name + " attention_key_skip probs " + what, got_p, want_p);
    }
  }
}
