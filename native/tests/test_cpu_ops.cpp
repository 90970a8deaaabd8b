// The CPU kernels beneath the CPU backend (src/cpu): the thread pool, and rows that come out bit for bit the same
// whatever the batch, the thread count or the kernel path. Their values against double references and finite
// differences are the op-test registry's (test_backend_ops), through the Backend interface on every backend.
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
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"
#include "core/half.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "quant/nf4.h"

using namespace dpo;
using std::vector;

using namespace dpo_test;  // the shared checks and double references (op_checks.h, reference_ops.h)

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
