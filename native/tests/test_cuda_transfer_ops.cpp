// The CUDA backend's small steps between the big ops (copy, fill_zero, scatter_rows, gather_rows, axpy, scale,
// dropout, dropout_backward, embedding_backward, attention_decode) and its caching allocator, through the
// Backend interface. The expected values come from tiny reference loops written here (the semantics of
// dpo/backend.h, fp32 ops rounded one at a time as the CPU does), and attention_decode is checked against
// cpu::attention_forward and, bitwise, against the backend's own prefill attention. Exact equality wherever the
// reference is exact; attention_decode within the 1e-5 of test_cuda_ops.cpp's attention parity.
// Without a GPU every GPU case prints "skipped: no GPU (<reason>)" and passes; the argument checks, the allocator's
// rounding and the launch-error path still run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "gpu_backend.h"
#include "random_data.h"
#include "core/fp_strict.h"
#include "cpu/ops.h"
#include "dpo/backend.h"
#include "dpo/errors.h"
#include "quant/nf4.h"

#ifdef DPO_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/caching_allocator.cuh"
#include "cuda/cuda_probe.h"
#include "cuda/ops_misc.cuh"
#endif

using namespace dpo;
using std::vector;

#ifdef DPO_WITH_CUDA

namespace {

using dpo_test::randn;
using dpo_test::randu;

vector<int> randi(size_t n, int lo, int hi, uint32_t seed) {  // [lo, hi]
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  vector<int> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <class T>
bool same_bits(const vector<T>& a, const vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Exact comparison that reports the first mismatches.
void check_bits(const char* what, const vector<float>& got, const vector<float>& want) {
  if (same_bits(got, want)) return;
  int shown = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()) && shown < 4; i++)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      std::printf("  %s[%zu] = %.9g, want %.9g\n", what, i, double(got[i]), double(want[i]));
      shown++;
    }
  std::printf("  %s: not bit-identical (sizes %zu, %zu)\n", what, got.size(), want.size());
  dpo_test::failures()++;
}

// |got - want| <= rtol |want| + rtol * rms(want), as test_cuda_ops.cpp's check_near.
void check_near(const char* what, const vector<float>& got, const vector<float>& want, double rtol = 1e-5) {
  CHECK(got.size() == want.size());
  if (got.size() != want.size()) return;
  double ss = 0;
  for (float w : want) ss += double(w) * w;
  const double atol = rtol * std::sqrt(ss / double(std::max<size_t>(want.size(), 1))) + 1e-30;
  int bad = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double g = got[i], w = want[i];
    if (std::fabs(g - w) <= rtol * std::fabs(w) + atol) continue;
    if (bad++ < 4) std::printf("  %s[%zu] = %.9g, want %.9g\n", what, i, g, w);
  }
  if (bad) {
    std::printf("  %s: %d of %zu values out of tolerance\n", what, bad, want.size());
    dpo_test::failures()++;
  }
}

// ---- the backend -----------------------------------------------------------------------------------------------


using dpo_test::gpu_or_skip;

using dpo_test::Arena;

}  // namespace

// ---- copy, fill_zero ----

TEST_CASE(cuda_copy_and_fill_zero_exact) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  for (const size_t n : {size_t(1), size_t(7), size_t(4099), (size_t(1) << 20) + 3}) {
    std::mt19937 rng(static_cast<uint32_t>(n));
    vector<uint8_t> bytes(n);
    for (auto& b : bytes) b = uint8_t(rng());
    Arena a(*g);
    uint8_t* src = a.put(bytes);
    uint8_t* dst = a.alloc<uint8_t>(n);
    g->copy(dst, src, n);
    CHECK(a.get(dst, n) == bytes);
    const size_t off = n / 3;
    g->fill_zero(dst + off, n - off);
    vector<uint8_t> want(bytes);
    std::fill(want.begin() + std::ptrdiff_t(off), want.end(), uint8_t(0));
    CHECK(a.get(dst, n) == want);
    g->copy(dst, src, 0);  // empty: no-ops
    g->fill_zero(dst, 0);
    CHECK(a.get(dst, n) == want);
  }
}

// ---- scatter_rows, gather_rows ----

TEST_CASE(cuda_scatter_gather_rows_exact) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  struct Shape { int M, width, R; };  // R rows in the big buffer
  for (const Shape sh : {Shape{1, 1, 1}, Shape{5, 37, 9}, Shape{16, 1024, 40}, Shape{300, 65, 301}}) {
    const int M = sh.M, W = sh.width, R = sh.R;
    std::printf("  M=%d width=%d rows=%d\n", M, W, R);
    const auto src = randn(size_t(M) * W, 1.0f, 100u + W);
    const auto big = randn(size_t(R) * W, 1.0f, 101u + W);
    // scatter: distinct destination rows (a KV-cache write), in a random order
    vector<int> perm(static_cast<size_t>(R));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(7u + R));
    const vector<int> to(perm.begin(), perm.begin() + M);
    vector<float> want(big);
    for (int r = 0; r < M; r++) std::copy_n(&src[size_t(r) * W], W, &want[size_t(to[size_t(r)]) * W]);
    Arena a(*g);
    float* dbig = a.put(big);
    g->scatter_rows(dbig, a.put(to), a.put(src), M, W);
    check_bits("scatter", a.get(dbig, big.size()), want);

    // gather: any rows, repeats allowed
    const auto from = randi(size_t(M), 0, R - 1, 9u + M);
    vector<float> want_g(src.size());
    for (int r = 0; r < M; r++) std::copy_n(&big[size_t(from[size_t(r)]) * W], W, &want_g[size_t(r) * W]);
    float* out = a.alloc<float>(src.size());
    g->gather_rows(out, a.put(big), a.put(from), M, W);
    check_bits("gather", a.get(out, src.size()), want_g);
  }
  // A negative row (a caller bug) writes nothing for scatter and a zero row for gather.
  Arena a(*g);
  const auto src = randn(6, 1.0f, 5u), big = randn(9, 1.0f, 6u);
  float* dbig = a.put(big);
  g->scatter_rows(dbig, a.put(vector<int>{2, -1}), a.put(src), 2, 3);
  vector<float> want(big);
  std::copy_n(&src[0], 3, &want[6]);
  check_bits("scatter negative", a.get(dbig, 9), want);
  float* out = a.put(src);
  g->gather_rows(out, a.put(big), a.put(vector<int>{-1, 1}), 2, 3);
  check_bits("gather negative", a.get(out, 6), vector<float>{0, 0, 0, big[3], big[4], big[5]});
}

// ---- axpy, scale, dropout, dropout_backward ----

TEST_CASE(cuda_axpy_scale_dropout_exact) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  for (const int64_t n : {int64_t(1), int64_t(1000), int64_t(1000003)}) {
    std::printf("  n=%lld\n", static_cast<long long>(n));
    const size_t N = size_t(n);
    const auto x = randn(N, 1.0f, 31u + uint32_t(n));
    auto y = randn(N, 1.0f, 32u + uint32_t(n));
    const float a = 0.3712891f, keep = 1.0f / 0.9f;
    std::mt19937 rng(33u + uint32_t(n));
    vector<uint8_t> kept(N);
    for (auto& k : kept) k = (rng() % 10) != 0;
    auto xs = x;  // dropped entries may hold NaN: they must give 0, not NaN
    for (size_t i = 0; i < N; i += 97)
      if (!kept[i]) xs[i] = std::numeric_limits<float>::quiet_NaN();
    for (size_t i = 1; i < N; i += 89) y[i] = -0.0f;  // a dropped dx element is left alone: -0 stays -0

    // The references: every product and sum rounded on its own (rn / mul_rn stop GCC from fusing them).
    vector<float> w_axpy(N), w_scale(N), w_drop(N), w_dback(N);
    size_t fma_differs = 0;
    for (size_t i = 0; i < N; i++) {
      w_axpy[i] = rn(y[i] + mul_rn(a, x[i]));
      fma_differs += std::fma(a, x[i], y[i]) != w_axpy[i];
      w_scale[i] = mul_rn(a, x[i]);
      w_drop[i] = kept[i] ? mul_rn(xs[i], keep) : 0.0f;
      w_dback[i] = kept[i] ? rn(y[i] + mul_rn(x[i], keep)) : y[i];
    }
    if (n > 1) CHECK(fma_differs > 0);  // the data would show a fused multiply-add
    Arena ar(*g);
    float* dx = ar.put(x);
    float* dy = ar.put(y);
    uint8_t* dk = ar.put(kept);
    g->axpy(dy, dx, a, n);
    check_bits("axpy", ar.get(dy, N), w_axpy);
    float* out = ar.alloc<float>(N);
    g->scale(out, dx, a, n);
    check_bits("scale", ar.get(out, N), w_scale);
    float* dx2 = ar.put(x);
    g->scale(dx2, dx2, a, n);  // in place
    check_bits("scale in place", ar.get(dx2, N), w_scale);
    g->dropout(out, ar.put(xs), dk, keep, n);
    check_bits("dropout", ar.get(out, N), w_drop);
    float* gx = ar.put(y);
    g->dropout_backward(gx, dx, dk, keep, n);
    check_bits("dropout_backward", ar.get(gx, N), w_dback);
  }
}

// ---- embedding_backward ----

TEST_CASE(cuda_embedding_backward_exact) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  struct Shape { int M, C, V; };
  // Few table rows: many repeated ids, whose sums depend on the order; M > 1024 crosses the id chunks, and
  // M >= 128 splits the ids over several partitions.
  for (const Shape sh : {Shape{1, 1, 1}, Shape{5, 37, 3}, Shape{300, 257, 17}, Shape{4100, 96, 50}}) {
    const int M = sh.M, C = sh.C, V = sh.V;
    std::printf("  M=%d C=%d V=%d\n", M, C, V);
    const auto dout = randn(size_t(M) * C, 1.0f, 51u + M);
    const auto table0 = randn(size_t(V) * C, 0.1f, 52u + M);
    auto ids = randi(size_t(M), 0, V - 1, 53u + M);
    if (M > 2) ids[1] = -1;  // skipped (a caller bug: the CPU op throws)
    vector<float> want(table0);
    for (int m = 0; m < M; m++) {
      if (ids[size_t(m)] < 0) continue;
      for (int c = 0; c < C; c++) want[size_t(ids[size_t(m)]) * C + c] += dout[size_t(m) * C + c];
    }
    Arena a(*g);
    float* dt = a.put(table0);
    g->embedding_backward(dt, a.put(dout), a.put(ids), M, C);
    check_bits("dtable", a.get(dt, want.size()), want);
  }
}

// ---- attention_decode ----

TEST_CASE(cuda_attention_decode_matches_prefill) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  struct Case { int M, Bc, S, NH, NKV, HD; };
  for (const Case c : {Case{1, 1, 7, 4, 2, 64}, Case{1, 3, 40, 8, 2, 128}, Case{16, 3, 40, 8, 2, 128},
                       Case{16, 16, 33, 6, 3, 80}, Case{16, 5, 300, 2, 1, 256}}) {
    std::printf("  M=%d Bc=%d S=%d NH=%d NKV=%d HD=%d\n", c.M, c.Bc, c.S, c.NH, c.NKV, c.HD);
    const size_t qrow = size_t(c.NH) * c.HD, krow = size_t(c.NKV) * c.HD, seqn = size_t(c.S) * krow;
    const auto q = randn(size_t(c.M) * qrow, 1.0f, 61u + c.HD + c.M);
    auto kc = randn(size_t(c.Bc) * seqn, 1.0f, 62u + c.HD + c.M);
    auto vc = randn(kc.size(), 1.0f, 63u + c.HD + c.M);
    auto seq = randi(size_t(c.M), 0, c.Bc - 1, 64u + c.M);
    auto pos = randi(size_t(c.M), 0, c.S - 1, 65u + c.M);
    pos[0] = c.M > 1 ? 0 : c.S - 1;  // the first and the last position
    if (c.M > 1) pos[size_t(c.M) - 1] = c.S - 1;
    // Cache slots past every row's position of their sequence hold NaN: any read of them shows.
    vector<int> maxpos(static_cast<size_t>(c.Bc), -1);
    for (int r = 0; r < c.M; r++) maxpos[size_t(seq[size_t(r)])] = std::max(maxpos[size_t(seq[size_t(r)])], pos[size_t(r)]);
    for (int b = 0; b < c.Bc; b++)
      for (int s = maxpos[size_t(b)] + 1; s < c.S; s++)
        for (size_t i = 0; i < krow; i++) {
          kc[size_t(b) * seqn + size_t(s) * krow + i] = std::numeric_limits<float>::quiet_NaN();
          vc[size_t(b) * seqn + size_t(s) * krow + i] = std::numeric_limits<float>::quiet_NaN();
        }

    Arena a(*g);
    const float* dq = a.put(q);
    const float* dk = a.put(kc);
    const float* dv = a.put(vc);
    const int* dpos = a.put(pos);
    float* out = a.alloc<float>(q.size());
    g->attention_decode(out, dq, dk, dv, a.put(seq), dpos, c.M, c.S, c.NH, c.NKV, c.HD);
    const auto got = a.get(out, q.size());

    float* one = a.alloc<float>(qrow);
    for (int r = 0; r < c.M; r++) {
      const int b = seq[size_t(r)], p = pos[size_t(r)];
      // The CPU reference: attention(B=1, T=1, S=pos+1, qpos=pos) on the sequence's first pos+1 keys.
      const vector<float> k1(kc.begin() + std::ptrdiff_t(b * seqn), kc.begin() + std::ptrdiff_t(b * seqn + (p + 1) * krow));
      const vector<float> v1(vc.begin() + std::ptrdiff_t(b * seqn), vc.begin() + std::ptrdiff_t(b * seqn + (p + 1) * krow));
      vector<float> want(qrow);
      cpu::attention_forward(want.data(), nullptr, &q[size_t(r) * qrow], k1.data(), v1.data(), &p, nullptr, 1, 1,
                             p + 1, c.NH, c.NKV, c.HD);
      const vector<float> row(got.begin() + std::ptrdiff_t(r * qrow), got.begin() + std::ptrdiff_t((r + 1) * qrow));
      check_near("decode vs cpu", row, want);
      // The backend's own prefill attention on the same cache gives the same bits (decode == prefill).
      g->attention(one, nullptr, dq + size_t(r) * qrow, dk + size_t(b) * seqn, dv + size_t(b) * seqn, dpos + r,
                   nullptr, 1, 1, p + 1, c.NH, c.NKV, c.HD);
      check_bits("decode vs prefill", row, a.get(one, qrow));
    }
  }
}

// ---- the caching allocator ----

TEST_CASE(cuda_allocator_rounding) {  // no GPU needed
  using cuda::CachingAllocator;
  CHECK(CachingAllocator::round_size(0) == 512);
  CHECK(CachingAllocator::round_size(1) == 512);
  CHECK(CachingAllocator::round_size(512) == 512);
  CHECK(CachingAllocator::round_size(513) == 1024);
  CHECK(CachingAllocator::round_size(size_t(1) << 20) == size_t(1) << 20);
  CHECK(CachingAllocator::round_size((size_t(1) << 20) + 1) == size_t(2) << 20);
  CHECK(CachingAllocator::round_size(size_t(3) << 20) == size_t(4) << 20);
  CHECK(CachingAllocator::round_size(size_t(4) << 20) == size_t(4) << 20);
}

TEST_CASE(cuda_backend_memory_accounting) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  using cuda::CachingAllocator;
  g->synchronize();
  const uint64_t base = g->bytes_in_use();
  g->reset_peak();
  CHECK(g->peak_bytes() == base);

  void* p = g->alloc(1000);
  CHECK(g->bytes_in_use() == base + 1024);  // counted at the rounded size
  g->free(p);
  CHECK(g->bytes_in_use() == base);
  void* p2 = g->alloc(1000);
  CHECK(p2 == p);  // the cached block is handed out again
  void* p3 = g->alloc(600);  // same 1024 B bucket, but p2 is taken: a new block
  CHECK(p3 != p2);
  const size_t big = (size_t(3) << 20) + 1;
  void* p4 = g->alloc(big);
  const uint64_t top = base + 1024 + 1024 + CachingAllocator::round_size(big);
  CHECK(g->bytes_in_use() == top);
  CHECK(g->peak_bytes() == top);
  g->free(p2), g->free(p3), g->free(p4);
  CHECK(g->bytes_in_use() == base);
  CHECK(g->peak_bytes() == top);  // the peak stays until reset
  void* p5 = g->alloc(600);       // either cached 1024 B block
  CHECK(p5 == p2 || p5 == p3);
  g->free(p5);
  g->reset_peak();
  CHECK(g->peak_bytes() == base);
  g->free(nullptr);  // ignored
  CHECK_THROWS_CODE(g->free(static_cast<char*>(p4) + 4), ErrorCode::Internal, "did not return");

  // The NF4 weights uploaded on first use are resident device memory: counted as in use.
  const int N = 40, K = 96;
  const auto wf = randn(size_t(N) * K, 0.05f, 71u);
  const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
  {
    Arena a(*g);
    float* out = a.alloc<float>(size_t(N));
    float* x = a.put(randn(size_t(K), 1.0f, 72u));
    const uint64_t before = g->bytes_in_use();
    g->matmul_nf4(out, x, w, nullptr, 1);
    g->synchronize();
    const uint64_t weights = CachingAllocator::round_size(size_t(N) * K / 2) +
                             CachingAllocator::round_size(size_t(w.blocks()) * sizeof(float));
    CHECK(g->bytes_in_use() == before + weights);
  }
}

TEST_CASE(cuda_allocator_oom_releases_cache) {
  if (!gpu_or_skip()) return;
  cuda::CachingAllocator mem;
  void* p = mem.alloc(size_t(1) << 20);
  mem.free(p);
  CHECK(mem.cached() == size_t(1) << 20);
  // Far more than any GPU has: the cache is released, the retry fails too, and the error is E_OOM with advice.
  CHECK_THROWS_CODE(mem.alloc(size_t(1) << 50, "a test"), ErrorCode::Oom, "--backend cpu");
  CHECK(mem.cached() == 0);
  CHECK(mem.in_use() == 0);
  void* q = mem.alloc(100);  // and it still works
  CHECK(mem.in_use() == 512);
  mem.free(q);
}

#endif  // DPO_WITH_CUDA

// ---- arguments and launch errors (no GPU needed) ----

#ifdef DPO_WITH_CUDA
TEST_CASE(cuda_transfer_launchers_check_arguments) {
  using namespace dpo::cuda;
  CHECK_THROWS_CODE(launch_scatter_rows(nullptr, nullptr, nullptr, nullptr, -1, 4), ErrorCode::BadInput, "bad shape");
  CHECK_THROWS_CODE(launch_gather_rows(nullptr, nullptr, nullptr, nullptr, 2, -4), ErrorCode::BadInput, "bad shape");
  CHECK_THROWS_CODE(launch_axpy(nullptr, nullptr, nullptr, 1.0f, -1), ErrorCode::BadInput, "bad size");
  CHECK_THROWS_CODE(launch_attention_decode(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 8, 6, 4,
                                            64),
                    ErrorCode::BadInput, "multiple of NKV");
  // Empty work launches nothing.
  launch_scatter_rows(nullptr, nullptr, nullptr, nullptr, 0, 4);
  launch_gather_rows(nullptr, nullptr, nullptr, nullptr, 3, 0);
  launch_axpy(nullptr, nullptr, nullptr, 1.0f, 0);
  launch_scale(nullptr, nullptr, nullptr, 1.0f, 0);
  launch_dropout_forward(nullptr, nullptr, nullptr, nullptr, 1.0f, 0);
  launch_dropout_backward(nullptr, nullptr, nullptr, nullptr, 1.0f, 0);
  launch_embedding_backward(nullptr, nullptr, nullptr, nullptr, 0, 8);
  launch_attention_decode(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8, 4, 2, 64);
  // Without a GPU a launch fails, and the launcher reports it as E_INTERNAL naming the op and the CUDA error.
  if (!cuda::probe().available) {
    CHECK_THROWS_CODE(launch_axpy(nullptr, nullptr, nullptr, 1.0f, 10), ErrorCode::Internal, "axpy: cuda");
    CHECK_THROWS_CODE(launch_embedding_backward(nullptr, nullptr, nullptr, nullptr, 3, 8), ErrorCode::Internal,
                      "embedding_backward: cuda");
    CHECK_THROWS_CODE(launch_attention_decode(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 8, 4,
                                              2, 64),
                      ErrorCode::Internal, "attention_decode: cuda");
    cudaGetLastError();
  }
}
#else
TEST_CASE(cuda_transfer_ops) { std::printf("  skipped: no GPU (the engine was built without CUDA)\n"); }
#endif

TEST_MAIN()
