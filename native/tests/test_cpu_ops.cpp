// The CPU kernels beneath the CPU backend (src/cpu): the thread pool, and rows that come out bit for bit the same
// whatever the batch, the thread count or the kernel path. Their values against double references and finite
// differences are the op-test registry's (test_backend_ops), through the Backend interface on every backend.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <string>
#include <vector>

#include "check.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"
#include "core/fp_strict.h"
#include "core/half.h"
#include "cpu/nf4_lanes.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "cpu/vec.h"
#include "dpo/backend.h"
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
        std::atomic<int64_t> chunks{0}, empty{0};
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          chunks++;
          if (e <= b) empty++;
          for (int64_t i = b; i < e; i++) hits[size_t(i)]++;
        });
        bool ok = true;
        for (auto& h : hits) ok = ok && h.load() == 1;
        CHECK(ok);
        // At most n / grain chunks, so that they average at least `grain` (those claimed last may be shorter), and
        // none empty.
        CHECK(chunks.load() <= std::max<int64_t>(1, n / grain));
        CHECK(empty.load() == 0);
      }
    }
    // A range too large for doubles to hold exactly: the chunks (sizes falling with 8 or more per thread here) still
    // tile [0, n) end to end, each non-empty.
    {
      const int64_t n = (int64_t(1) << 62) + 12345;
      std::mutex mu;
      vector<std::pair<int64_t, int64_t>> ranges;
      parallel_for(n, n / 1000, [&](int64_t b, int64_t e) {
        std::lock_guard<std::mutex> lock(mu);
        ranges.emplace_back(b, e);
      });
      std::sort(ranges.begin(), ranges.end());
      bool tiled = !ranges.empty() && ranges.front().first == 0 && ranges.back().second == n;
      for (size_t i = 0; i < ranges.size(); i++) {
        tiled = tiled && ranges[i].first < ranges[i].second;
        if (i > 0) tiled = tiled && ranges[i].first == ranges[i - 1].second;
      }
      CHECK(tiled);
    }
    // nested: runs inline, no deadlock
    std::atomic<int64_t> sum{0};
    parallel_for(8, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) parallel_for(100, 1, [&](int64_t b2, int64_t e2) { sum += e2 - b2; });
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

// A job must run each of its elements exactly once and return only when all are done, also when a worker still
// holds a stale view of the job before: jobs of 2 chunks alternate with jobs of up to 32 chunks, each writing its
// job number into every element and counting the elements it ran, checked right after the call returns. (A late
// worker that paired the previous job's claim word with the next job's chunk count once ran chunks twice and let
// a call return early: crashes and hangs in the sweep and resume tests.)
TEST_CASE(thread_pool_back_to_back_jobs_of_changing_sizes) {
  for (int threads : {2, 3, 8}) {  // more threads than cores: workers get preempted inside the claim
    set_cpu_thread_count(threads);
    const int64_t n = 512;
    vector<std::atomic<int>> stamp(n);
    bool ok = true;
    for (int job = 1; job <= 30000 && ok; job++) {
      const int64_t grain = job % 2 ? n / 2 : 1;  // 2 chunks, then 8 per thread
      std::atomic<int64_t> ran{0};
      parallel_for(n, grain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) {
          if (stamp[size_t(i)].exchange(job) != job - 1) ok = false;  // run twice, or skipped by the last job
        }
        ran += e - b;
      });
      ok = ok && ran.load() == n;
      for (int64_t i = 0; i < n && ok; i += 97) ok = stamp[size_t(i)].load() == job;
    }
    CHECK(ok);
  }
  set_cpu_thread_count(0);
}

// ================================ batch and thread invariance (bit-exact) ================================

TEST_CASE(matmul_rows_are_batch_and_thread_invariant) {
  // M = 17 and every batch size below it: full bands of kDotMR rows and a leftover band of each height
  // (docs/cpu-kernels.md#tiles), on the fp32 and the tiled NF4 paths (K = 172 and 13 are not multiples of 64).
  // K = 64, 32 and 48 with 8 or more rows take the fp32 short-row path (docs/cpu-kernels.md#short-rows), fewer rows
  // the dot tiles: N = 200 and 40 leave columns past the last 32 to the tiles.
  const int M = 17;
  const int shapes[][2] = {{172, 1000}, {1024, 96}, {64, 64}, {13, 5}, {64, 200}, {32, 64}, {48, 40}};
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
      // a batch of any size taken from the middle gives the same rows again
      for (int g = 2; g < M; g++) {
        const int m0 = (M - g) / 2;
        vector<float> part(size_t(g) * N);
        cpu::matmul_forward(part.data(), x.data() + size_t(m0) * K, w.data(), bias.data(), g, K, N);
        CHECK(same_bits(part.data(), mm.data() + size_t(m0) * N, part.size()));
        cpu::matmul_nf4_forward(part.data(), x.data() + size_t(m0) * K, wq, bias.data(), g);
        CHECK(same_bits(part.data(), nf.data() + size_t(m0) * N, part.size()));
      }
      if (ref_mm.empty()) ref_mm = mm, ref_nf4 = nf;
      CHECK(same_bits(mm.data(), ref_mm.data(), mm.size()));
      CHECK(same_bits(nf.data(), ref_nf4.data(), nf.size()));
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(matmul_nf4_register_path_equals_tiled_path) {
  // Up to kGemvMaxRows (8; 7 with AVX2) rows with K % 64 == 0 take the register-decoding path; 20 rows take the tiled
  // path that decodes into a buffer. A row must give the same bits alone, in every small group and inside the big
  // batch, for every storage dtype, tiny scales (fp16 subnormals), odd N and 1 or 2 threads; and match the double
  // reference.
  const int M = 20;
  const int shapes[][2] = {{64, 1}, {128, 37}, {1024, 96}, {896, 173}};
  uint32_t seed = 5000;
  for (auto& s : shapes) {
    const int K = s[0], N = s[1];
    for (float sigma : {0.05f, 3e-6f}) {
      for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
        const Nf4Matrix w = random_nf4(N, K, sigma, dt, seed++);
        const auto x = randu(size_t(M) * K, -2, 2, seed++), bias = randu(size_t(N), -1, 1, seed++);
        for (int threads : {1, 2}) {
          set_cpu_thread_count(threads);
          vector<float> all(size_t(M) * N, NAN);
          cpu::matmul_nf4_forward(all.data(), x.data(), w, bias.data(), M);
          for (int group : {1, 2, 3, 4, 5, 8}) {
            for (int m0 = 0; m0 + group <= M; m0 += group) {
              vector<float> part(size_t(group) * N, NAN);
              cpu::matmul_nf4_forward(part.data(), x.data() + size_t(m0) * K, w, bias.data(), group);
              CHECK(same_bits(part.data(), all.data() + size_t(m0) * N, part.size()));
            }
          }
          if (threads == 1) {
            vector<float> one(static_cast<size_t>(N));
            cpu::matmul_nf4_forward(one.data(), x.data(), w, nullptr, 1);
            vector<double> ref, scale;
            ref_matmul(ref, &scale, to_d(bf16_all(vector<float>(x.begin(), x.begin() + K))), to_d(nf4_weights_bf16(w)),
                       nullptr, 1, K, N);
            check_scaled("nf4 register path vs bf16 ref", one.data(), ref.data(), scale.data(), one.size(), 1e-5);
          }
        }
      }
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(matmul_nf4_many_equals_one_matrix_at_a_time) {
  // q, k and v of a GQA layer (N = 96, 32, 32, one with a bias) and gate/up-like shapes against one x: in registers
  // (M <= 8), tiled, and long rows in chunks (K = 1600), at 1 and 2 threads.
  const int shapes[][2] = {{128, 3}, {128, 40}, {1600, 13}};
  uint32_t seed = 4200;
  for (auto& s : shapes) {
    const int K = s[0], M = s[1];
    const int Ns[3] = {96, 32, 32};
    std::vector<Nf4Matrix> ws;
    for (int N : Ns) ws.push_back(nf4_quantize(randn(size_t(N) * K, 0.05f, seed++).data(), N, K));
    const auto x = randu(size_t(M) * K, -1, 1, seed++), bias = randu(32, -1, 1, seed++);
    const float* biases[3] = {nullptr, bias.data(), nullptr};
    for (int threads : {1, 2}) {
      set_cpu_thread_count(threads);
      vector<vector<float>> many(3), one(3);
      vector<cpu::Nf4Product> products;
      for (int i = 0; i < 3; i++) {
        many[size_t(i)].assign(size_t(M) * Ns[i], 0.0f), one[size_t(i)].assign(size_t(M) * Ns[i], 0.0f);
        products.push_back({many[size_t(i)].data(), &ws[size_t(i)], biases[i]});
        cpu::matmul_nf4_forward(one[size_t(i)].data(), x.data(), ws[size_t(i)], biases[i], M);
      }
      cpu::matmul_nf4_forward_many(products.data(), 3, x.data(), M);
      for (int i = 0; i < 3; i++) CHECK(same_bits(many[size_t(i)], one[size_t(i)]));
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(matmul_nf4_long_rows_in_chunks_give_the_same_bits) {
  // Rows longer than 1536 run in chunks of K with the tiles' lane sums parked between chunks
  // (docs/cpu-kernels.md#tiles): each output must be the one lane sum over all of K, so the fp32 matmul of bf16(x)
  // and the decoded weights (never chunked) gives the same bits; so does each row alone (the register path when
  // K % 64 == 0), any slice of the batch and 1-3 threads. K: a multiple of 64 split evenly (1664, 2048), unevenly
  // (4864: 4 chunks of 1024 and one of 768), not a multiple of 64 (1600, and 1543 with a 16-lane tail); M with
  // leftover bands (13, 203: two row blocks); N not a multiple of the tile; every storage dtype, bias or none.
  const int shapes[][3] = {{13, 1664, 37}, {9, 1600, 10}, {203, 2048, 6}, {13, 4864, 9}, {11, 1543, 5}};
  uint32_t seed = 9100;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
      const auto wf = randn(size_t(N) * K, 0.05f, seed++);
      const Nf4Matrix w = nf4_quantize(wf.data(), N, K, dt);
      const auto x = randu(size_t(M) * K, -2, 2, seed++), bias = randu(size_t(N), -1, 1, seed++);
      const float* b = dt == Nf4StorageDType::BF16 ? nullptr : bias.data();
      vector<float> want(size_t(M) * N);
      cpu::matmul_forward(want.data(), bf16_all(x).data(), nf4_weights_bf16(w).data(), b, M, K, N);
      for (int threads : {1, 2, 3}) {
        set_cpu_thread_count(threads);
        vector<float> all(size_t(M) * N, NAN);
        cpu::matmul_nf4_forward(all.data(), x.data(), w, b, M);
        CHECK(same_bits(all.data(), want.data(), all.size()));
        for (int g : {1, 7}) {
          const int m0 = (M - g) / 2;
          vector<float> part(size_t(g) * N, NAN);
          cpu::matmul_nf4_forward(part.data(), x.data() + size_t(m0) * K, w, b, g);
          CHECK(same_bits(part.data(), want.data() + size_t(m0) * N, part.size()));
        }
      }
      vector<double> ref, scale;
      ref_matmul(ref, &scale, to_d(bf16_all(x)), to_d(nf4_weights_bf16(w)), b ? to_d(bias).data() : nullptr, M, K, N);
      check_scaled("nf4 chunked rows vs bf16 ref", want.data(), ref.data(), scale.data(), want.size(), 1e-5);
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(matmul_nf4_several_row_blocks_give_the_same_bits) {
  // x of more rows than one task runs (M > 131072 / K) takes weight blocks sized from the L2 (cpu/cache_sizes.h,
  // docs/cpu-kernels.md#tiles): with a 2 MiB L2, N = 390 rows at K = 768 are three blocks on one thread instead of
  // seven (a machine that reports a 512 KiB L2 or none keeps seven). Every output must still be the one lane sum the
  // fp32 matmul of bf16(x) and the decoded weights gives, on 1-3 threads, and each row alone (the register path) the
  // same.
  const int M = 361, K = 768, N = 390;
  const auto wf = randn(size_t(N) * K, 0.05f, 9300);
  const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
  const auto x = randu(size_t(M) * K, -2, 2, 9301), bias = randu(size_t(N), -1, 1, 9302);
  vector<float> want(size_t(M) * N);
  cpu::matmul_forward(want.data(), bf16_all(x).data(), nf4_weights_bf16(w).data(), bias.data(), M, K, N);
  for (int threads : {1, 2, 3}) {
    set_cpu_thread_count(threads);
    vector<float> all(size_t(M) * N, NAN), one(N, NAN);
    cpu::matmul_nf4_forward(all.data(), x.data(), w, bias.data(), M);
    CHECK(same_bits(all.data(), want.data(), all.size()));
    for (int m : {0, 170, M - 1}) {
      cpu::matmul_nf4_forward(one.data(), x.data() + size_t(m) * K, w, bias.data(), 1);
      CHECK(same_bits(one.data(), want.data() + size_t(m) * N, one.size()));
    }
  }
  vector<double> ref, scale;
  ref_matmul(ref, &scale, to_d(bf16_all(x)), to_d(nf4_weights_bf16(w)), to_d(bias).data(), M, K, N);
  check_scaled("nf4 several row blocks vs bf16 ref", want.data(), ref.data(), scale.data(), want.size(), 1e-5);
  set_cpu_thread_count(0);
}

TEST_CASE(nf4_block_table_equals_scalar_rounding) {
  // The decode GEMV's block table skips the NaN arm of the bf16 rounding when the block's absmax is finite
  // (docs/cpu-kernels.md); with or without it, every entry must be the scalar double rounding of table * absmax,
  // for absmax of every exponent (subnormals, fp16 overflow, inf, NaN) and every storage dtype. Checks this TU's set.
  // (NaNs with every payload bit set: the rounding arm alone would carry them into the sign bit, giving -0.)
  vector<float> amaxes = {
      0.0f,     -0.0f,    INFINITY, -INFINITY, NAN,    -NAN, bits_f32(0x7fffffffu), bits_f32(0xffffffffu),
      65504.0f, 65520.0f, 3.4e38f,  1e-45f,    -1e-40f};
  std::mt19937 g(8100);
  for (int i = 0; i < 1 << 16; i++) amaxes.push_back(bits_f32(uint32_t(g())));
  int bad = 0;
  for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
    for (float amax : amaxes) {
      float tiled[16], gemv[16];
      const cpu::f32x16 lut_tiled = cpu::block_lut_bf16(amax, dt), lut_gemv = cpu::block_lut_bf16_gemv(amax, dt);
      std::memcpy(tiled, &lut_tiled, sizeof tiled);
      std::memcpy(gemv, &lut_gemv, sizeof gemv);
      for (int e = 0; e < 16; e++) {
        float v = kNf4Table[e] * amax;
        if (dt == Nf4StorageDType::F16) v = round_fp16(v);
        const float want = round_bf16(v);
        for (float got : {tiled[e], gemv[e]})
          bad += std::isnan(want) ? !std::isnan(got) : f32_bits(got) != f32_bits(want);
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE(matmul_bf16_weights_equal_fp32_weights) {
  // A bf16 weight matrix (lm_head of a bf16 checkpoint) gives the same bits as its exact fp32 widening, forward and
  // input gradient, at decode and scoring shapes (K with and without a 16-lane tail), and matches the double reference.
  const int shapes[][3] = {{1, 896, 300}, {3, 64, 1000}, {70, 100, 33}, {70, 100, 133}, {5, 13, 7}};
  uint32_t seed = 6000;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto x = randu(size_t(M) * K, -2, 2, seed++), dout = randu(size_t(M) * N, -1, 1, seed++);
    vector<float> wf = bf16_all(randn(size_t(N) * K, 0.05f, seed++));
    vector<uint16_t> wb(wf.size());
    for (size_t i = 0; i < wf.size(); i++) wb[i] = uint16_t(f32_bits(wf[i]) >> 16);
    vector<float> want(size_t(M) * N), got(size_t(M) * N, NAN);
    cpu::matmul_forward(want.data(), x.data(), wf.data(), nullptr, M, K, N);
    cpu::matmul_bf16_forward(got.data(), x.data(), wb.data(), M, K, N);
    CHECK(same_bits(got.data(), want.data(), got.size()));
    vector<double> ref, scale;
    ref_matmul(ref, &scale, to_d(x), to_d(wf), nullptr, M, K, N);
    check_scaled("bf16-weight matmul", got.data(), ref.data(), scale.data(), got.size(), 1e-5);
    vector<float> dx_want(x.size(), 0.5f), dx_got(x.size(), 0.5f);
    cpu::matmul_backward(dx_want.data(), nullptr, nullptr, dout.data(), x.data(), wf.data(), M, K, N);
    cpu::matmul_bf16_backward_input(dx_got.data(), dout.data(), wb.data(), M, K, N);
    CHECK(same_bits(dx_got.data(), dx_want.data(), dx_got.size()));
  }
}

TEST_CASE(reduce16x4_equals_four_reduce16) {
  // The four-at-a-time reduction (AVX-512, and AVX's two 8-lane parts; this build's flags pick which) adds the same
  // pairs as reduce16, so every sum has the same bits: random lanes of mixed magnitudes, signed zeros, infinities.
  std::mt19937 rng(7100);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> e(-30, 30);
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, 1e30f, -1e30f};
  for (int trial = 0; trial < 2000; trial++) {
    float lanes[4][cpu::kLanes], four[4];
    for (auto& v : lanes)
      for (float& l : v) l = trial % 7 == 0 && rng() % 5 == 0 ? specials[rng() % 6] : std::ldexp(u(rng), e(rng));
    cpu::f32x16 v[4];
    for (int i = 0; i < 4; i++) v[i] = cpu::load16(lanes[i]);
    cpu::reduce16x4(v[0], v[1], v[2], v[3], four);
    for (int i = 0; i < 4; i++) {
      const float one = cpu::reduce16(v[i]);
      CHECK(same_bits(&one, &four[i], 1));
    }
  }
}

TEST_CASE(kernel_sets_give_the_same_bits) {
  // The AVX-512 and AVX2 kernel sets both fuse each multiply-add and keep every lane order, so each matmul gives the
  // same bits in both (docs/cpu-kernels.md); the baseline set (no FMA) is checked against the double reference by
  // the whole suite under DPO_CPU_KERNELS=generic. Runs what this CPU can run.
  const char* initial = cpu::matmul_kernel_set();
  const int M = 20, K = 200, N = 37, KQ = 128;  // K with a 16-lane tail; KQ a multiple of the NF4 block
  const auto x = randu(size_t(M) * K, -1, 1, 7001), w = randu(size_t(N) * K, -1, 1, 7002);
  const auto xq = randu(size_t(M) * KQ, -1, 1, 7003), dout = randu(size_t(M) * N, -1, 1, 7004);
  const auto wq = randn(size_t(N) * KQ, 0.05f, 7005);
  const Nf4Matrix q = nf4_quantize(wq.data(), N, KQ);
  vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); i++) wb[i] = f32_to_bf16(w[i]);
  auto run_all = [&] {
    vector<float> r;
    auto put = [&](const vector<float>& v) { r.insert(r.end(), v.begin(), v.end()); };
    vector<float> out(size_t(M) * N), dx(size_t(M) * K, 0.0f), dw(size_t(N) * K, 0.0f), dxq(size_t(M) * KQ, 0.0f);
    cpu::matmul_forward(out.data(), x.data(), w.data(), nullptr, M, K, N), put(out);
    cpu::matmul_forward(out.data(), xq.data(), w.data(), nullptr, M, 64, N), put(out);  // the short-row path
    cpu::matmul_backward(dx.data(), dw.data(), nullptr, dout.data(), x.data(), w.data(), M, K, N), put(dx), put(dw);
    cpu::matmul_bf16_forward(out.data(), x.data(), wb.data(), M, K, N), put(out);
    cpu::matmul_nf4_forward(out.data(), xq.data(), q, nullptr, M), put(out);  // tiled path
    cpu::matmul_nf4_forward(out.data(), xq.data(), q, nullptr, 3), put(out);  // register path
    cpu::matmul_nf4_backward_input(dxq.data(), dout.data(), q, M), put(dxq);
    return r;
  };
  vector<float> first;
  int compared = 0;
  for (const char* set : {"avx512", "avx2"}) {
    if (!cpu::use_matmul_kernel_set(set)) continue;
    const vector<float> r = run_all();
    if (first.empty()) {
      first = r;
    } else {
      CHECK(same_bits(r.data(), first.data(), r.size()));
      compared++;
    }
  }
  std::printf("  kernel sets compared bit for bit: %d pair(s)\n", compared);
  CHECK(cpu::use_matmul_kernel_set(initial) || std::string(initial) == "native");
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
    cpu::attention_forward(out.data(), nullptr, qall.data(), kall.data(), vall.data(), qpos.data(), valid.data(), B, S,
                           S, NH, NKV, HD);
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
  const auto q = randu(size_t(a.B) * a.T * a.NH * a.HD, -1, 1, 5),
             k = randu(size_t(a.B) * a.S * a.NKV * a.HD, -1, 1, 6);
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
    cpu::attention_forward(o.data(), p.data(), q.data(), k.data(), v.data(), qpos.data(), nullptr, a.B, a.T, a.S, a.NH,
                           a.NKV, a.HD);
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), Ga.data(), p.data(), q.data(), k.data(), v.data(), a.B,
                            a.T, a.S, a.NH, a.NKV, a.HD);
    vector<vector<float>> all = {dx, dw, db, dxq, o, p, dq, dk, dv};
    if (first.empty()) first = all;
    for (size_t i = 0; i < all.size(); i++) CHECK(same_bits(all[i].data(), first[i].data(), all[i].size()));
  }
  set_cpu_thread_count(0);
}

TEST_CASE(gradient_products_are_batch_and_thread_invariant) {
  // The input and weight gradients at training sizes, where the split into (rows x columns) tasks depends on M, K
  // and the thread count (all of a micro-batch's rows in one block up to 256, column blocks sized so that every
  // thread gets two tasks; docs/cpu-kernels.md#gradient-products): the same bits for every thread count, each row
  // alone as in the batch, a bf16 weight as its fp32 widening, and the NF4 input gradient against the double
  // reference. M = 300 is two row blocks; K = 768 splits into 3 or 4 column blocks; K = 200 has a 16-lane tail.
  const int shapes[][3] = {{300, 768, 70}, {150, 200, 67}, {140, 896, 40}};
  uint32_t seed = 9000;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto x = randu(size_t(M) * K, -1, 1, seed++), G = randu(size_t(M) * N, -1, 1, seed++);
    const auto w = bf16_all(randu(size_t(N) * K, -1, 1, seed++)), wf = randn(size_t(N) * K, 0.05f, seed++);
    vector<uint16_t> wb(w.size());
    for (size_t i = 0; i < w.size(); i++) wb[i] = f32_to_bf16(w[i]);
    const Nf4Matrix wq = nf4_quantize(wf.data(), N, K);
    const auto dx0 = randu(x.size(), -1, 1, seed++);
    vector<vector<float>> first;
    for (int threads : {1, 2, 3}) {
      set_cpu_thread_count(threads);
      vector<float> dx = dx0, dw(w.size(), 0.25f), dxb = dx0, dxq = dx0;
      cpu::matmul_backward(dx.data(), dw.data(), nullptr, G.data(), x.data(), w.data(), M, K, N);
      cpu::matmul_bf16_backward_input(dxb.data(), G.data(), wb.data(), M, K, N);
      cpu::matmul_nf4_backward_input(dxq.data(), G.data(), wq, M);
      CHECK(same_bits(dxb.data(), dx.data(), dx.size()));
      for (int m : {0, M / 2, M - 1}) {
        vector<float> one(dx0.begin() + int64_t(m) * K, dx0.begin() + int64_t(m + 1) * K), oneq = one;
        cpu::matmul_backward(one.data(), nullptr, nullptr, G.data() + int64_t(m) * N, x.data(), w.data(), 1, K, N);
        CHECK(same_bits(one.data(), dx.data() + int64_t(m) * K, size_t(K)));
        cpu::matmul_nf4_backward_input(oneq.data(), G.data() + int64_t(m) * N, wq, 1);
        CHECK(same_bits(oneq.data(), dxq.data() + int64_t(m) * K, size_t(K)));
      }
      vector<vector<float>> all = {dx, dw, dxq};
      if (first.empty()) first = all;
      for (size_t i = 0; i < all.size(); i++) CHECK(same_bits(all[i].data(), first[i].data(), all[i].size()));
    }
    vector<double> ref, scale;
    ref_matmul_dx(ref, scale, dx0, bf16_all(G), nf4_weights_bf16(wq), M, K, N);
    check_scaled("nf4 dx M=" + std::to_string(M) + " K=" + std::to_string(K), first[2], ref, scale, 1e-5);
  }
  set_cpu_thread_count(0);
}

// The overwriting forms (fresh scratch in the backward, docs/performance.md#the-steps-between-the-matmuls) against
// zero-filled outputs and the accumulating forms, bit for bit, into outputs filled with NaN: the NF4 input gradient
// with whole and ragged (16-lane tail) column blocks and an empty sum (N = 0), swiglu_backward with a tail of fewer
// than 16 elements. Gradients of exactly -0 are among them (a zero dout row), where a plain store would differ from
// 0 + sum.
TEST_CASE(overwriting_backward_ops_equal_zero_fill_and_accumulate) {
  const int shapes[][3] = {{37, 768, 70}, {20, 200, 67}, {5, 64, 0}};
  uint32_t seed = 9500;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    auto G = randu(size_t(M) * size_t(std::max(N, 1)), -1, 1, seed++);
    for (int n = 0; n < N; n++) G[size_t(n)] = -0.0f;  // row 0: every sum is a sum of -0 terms
    const auto wf = randn(size_t(std::max(N, 1)) * K, 0.05f, seed++);
    const Nf4Matrix wq = nf4_quantize(wf.data(), N, K);
    for (int threads : {1, 2}) {
      set_cpu_thread_count(threads);
      vector<float> zeroed(size_t(M) * K, 0.0f), fresh(size_t(M) * K, std::nanf(""));
      cpu::matmul_nf4_backward_input(zeroed.data(), G.data(), wq, M);
      cpu::matmul_nf4_backward_input(fresh.data(), G.data(), wq, M, /*overwrite=*/true);
      CHECK(same_bits(fresh.data(), zeroed.data(), zeroed.size()));
    }
  }
  for (const int n : {16 * 40, 16 * 40 + 7}) {
    const int M = 1, F = n;
    auto dout = randu(size_t(n), -2, 2, seed++);
    const auto gate = randu(size_t(n), -6, 6, seed++), up = randu(size_t(n), -2, 2, seed++);
    for (int i = 0; i < 16; i++) dout[size_t(i)] = -0.0f;
    vector<float> zg(size_t(n), 0.0f), zu(size_t(n), 0.0f), fg(size_t(n), std::nanf("")), fu = fg;
    cpu::swiglu_backward(zg.data(), zu.data(), dout.data(), gate.data(), up.data(), M, F);
    cpu::swiglu_backward(fg.data(), fu.data(), dout.data(), gate.data(), up.data(), M, F, /*overwrite=*/true);
    CHECK(same_bits(fg.data(), zg.data(), zg.size()));
    CHECK(same_bits(fu.data(), zu.data(), zu.size()));
  }
  set_cpu_thread_count(0);
}

// ================================ CPU backend memory ================================

TEST_CASE(rope_angle_table_gives_the_per_row_angles) {
  // rope_forward keeps cos/sin per position across calls (rope.cpp AngleTable). Two frequency tables and scalings
  // in turn, positions that grow past the table and repeat: every forward row equals the formula written out with
  // per-row angles (as rope.cpp computed them before the table), and a backward equals itself after other tables.
  const int H = 3, HD = 16, half = HD / 2;
  vector<float> fa(half), fb(half);
  for (int j = 0; j < half; j++)
    fa[size_t(j)] = std::pow(10000.0f, -2.0f * j / HD), fb[size_t(j)] = 0.5f * fa[size_t(j)];
  auto expected = [&](const vector<float>& x, const vector<int>& pos, const vector<float>& f, float scaling) {
    vector<float> y = x;
    for (size_t m = 0; m < pos.size(); m++)
      for (int h = 0; h < H; h++)
        for (int j = 0; j < half; j++) {
          const float a = float(pos[m]) * f[size_t(j)];
          float c = float(std::cos(double(a))), sn = float(std::sin(double(a)));
          if (scaling != 1.0f) c = mul_rn(c, scaling), sn = mul_rn(sn, scaling);
          float* v = y.data() + (m * H + size_t(h)) * HD;
          const float x1 = v[j], x2 = v[j + half];
          v[j] = mul_rn(x1, c) + mul_rn(-x2, sn);
          v[j + half] = mul_rn(x2, c) + mul_rn(x1, sn);
        }
    return y;
  };
  uint32_t seed = 5100;
  vector<float> first_backward;
  for (int round = 0; round < 3; round++)
    for (const auto& [f, scaling] : {std::pair{&fa, 1.0f}, std::pair{&fb, 1.25f}}) {
      const int M = 7 + 40 * round;
      vector<int> pos(static_cast<size_t>(M));
      for (int m = 0; m < M; m++) pos[size_t(m)] = (m * 7) % (10 + 60 * round);  // repeats; grows each round
      const vector<float> x = randu(size_t(M) * H * HD, -1, 1, seed++);
      vector<float> y = x;
      cpu::rope_forward(y.data(), pos.data(), M, H, HD, f->data(), scaling);
      CHECK(same_bits(y, expected(x, pos, *f, scaling)));
      if (f != &fa) continue;
      // The backward of round 0's rows, again in every round after the other table.
      const vector<int> back_pos = {0, 7, 4, 1, 8, 5, 2};
      vector<float> d = randu(size_t(7) * H * HD, -1, 1, 5000);
      cpu::rope_backward(d.data(), back_pos.data(), 7, H, HD, fa.data(), 1.0f);
      if (round == 0) first_backward = d;
      else CHECK(same_bits(d, first_backward));
    }
}

TEST_CASE(cpu_backend_tensors_start_on_cache_lines) {
  // Kernels read activations, LoRA factors and gradients in place, 16 floats at a time: a tensor that starts inside a
  // cache line makes every such load straddle two (docs/cpu-kernels.md#cache-line-aligned-tensors). Small, odd,
  // heap-sized and block-cache sizes (16 MiB and up), fresh and handed back from the cache.
  const std::unique_ptr<Backend> be = make_cpu_backend();
  const size_t sizes[] = {1, 4, 100, 3 * 768 * 4 + 4, size_t(1) << 20, (size_t(17) << 20) + 12, size_t(20) << 20};
  for (int round = 0; round < 2; round++) {
    for (size_t bytes : sizes) {
      auto* p = static_cast<unsigned char*>(be->alloc(bytes));
      CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
      p[0] = 1, p[bytes - 1] = 2;  // the whole request is usable (ASan builds check the bounds)
      be->free(p);
    }
  }
  CHECK(be->bytes_in_use() == 0);
}

TEST_MAIN()
