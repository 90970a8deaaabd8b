// Cases of the memory calls of Backend (kind, describe, alloc, free, upload, download, synchronize, bytes_in_use,
// peak_bytes, reset_peak, shares_host_memory) on every backend: round trips bit for bit, E_OOM with advice for an
// impossible allocation (never an abort), foreign pointers refused where the backend can tell, and the accounting
// (exact bytes on the host backends, the CPU's reuse of large blocks, the caching allocator's rounded sizes and
// block reuse on the GPU, NF4 weights
// uploaded at first use counted as resident). The CUDA allocator's rounding is checked without a GPU.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "cpu/block_cache.h"
#include "dpo/errors.h"
#include "op_checks.h"
#include "quant/nf4.h"
#include "random_data.h"

#ifdef DPO_WITH_CUDA
#include "cuda/caching_allocator.cuh"
#endif

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

// What alloc(bytes) adds to bytes_in_use: the bytes asked for on the host backends, the rounded block on the GPU.
uint64_t counted(const Target& t, size_t bytes) {
#ifdef DPO_WITH_CUDA
  if (t.is_cuda()) return dpo::cuda::CachingAllocator::round_size(bytes);
#endif
  (void)t;
  return bytes;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

OP_CASE(kind) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.hosts()) CHECK(t.be->kind() == BackendKind::Cpu);
  // make_cuda_backend either works or throws E_NO_CUDA with a reason (gpu_backend.h counts anything else).
  if (Backend* g = ctx.cuda_or_skip()) CHECK(g->kind() == BackendKind::Cuda);
  else CHECK(!gpu_reason().empty() || ctx.cuda_why_ == "cuda not selected");
}

OP_CASE(describe) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    const std::string d = t.be->describe();
    std::printf("  %s: %s\n", t.name.c_str(), d.c_str());
    CHECK(starts_with(d, t.name + " ("));
  }
}

OP_CASE(alloc) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    void* p = t.be->alloc(0);  // zero bytes is a valid allocation
    void* q = t.be->alloc(100);
    CHECK(q != nullptr && q != p);
    t.be->free(p);
    t.be->free(q);
    // Far more than any machine has: E_OOM naming what to change, and the backend still works.
    CHECK_THROWS_CODE(t.be->alloc(size_t(1) << 50), ErrorCode::Oom, t.is_cuda() ? "--backend cpu" : "out of memory");
    void* r = t.be->alloc(64);
    t.be->free(r);
  }
  for (const Target& t : ctx.hosts()) {
    if (t.name != "cpu") continue;
    // The CPU backend keeps freed blocks of 16 MiB and more (cpu/block_cache.h): a request of the same size class
    // (within 1/8 above it) gets the block back, still counted at the bytes asked for; a request of another class or
    // a smaller block does not.
    Backend& cpu = *t.be;
    const uint64_t base = cpu.bytes_in_use();
    const size_t big = size_t(20) << 20;
    void* p = cpu.alloc(big);
    std::memset(p, 1, big);  // the whole size-class block is usable up to what was asked
    cpu.free(p);
    void* q = cpu.alloc(big - 100000);
    CHECK(q == p);
    CHECK(cpu.bytes_in_use() == base + big - 100000);
    void* r = cpu.alloc(size_t(40) << 20);  // another class: a block of its own
    CHECK(r != q);
    cpu.free(q);
    cpu.free(r);
    CHECK(cpu.bytes_in_use() == base);
    void* s = cpu.alloc(size_t(1) << 20);  // below the cached sizes: malloc's
    cpu.free(s);
    CHECK(cpu.bytes_in_use() == base);
  }
  {
    // The size classes and the cap, on a cache of its own.
    BlockCache cache(size_t(16) << 20, size_t(64) << 20);
    CHECK(cache.capacity_for(1000) == 1000);
    CHECK(cache.capacity_for(size_t(16) << 20) == size_t(16) << 20);
    CHECK(cache.capacity_for((size_t(16) << 20) + 1) == size_t(18) << 20);
    CHECK(cache.capacity_for(size_t(31) << 20) == size_t(32) << 20);
    CHECK(cache.capacity_for(size_t(66) << 20) == size_t(72) << 20);
    void* a = std::malloc(size_t(32) << 20);
    void* b = std::malloc(size_t(40) << 20);
    CHECK(cache.keep(a, size_t(32) << 20));
    CHECK(!cache.keep(b, size_t(40) << 20));  // 72 MiB would pass the 64 MiB cap: the caller frees it
    std::free(b);
    CHECK(!cache.keep(&cache, 1000));  // too small to cache
    CHECK(cache.cached_bytes() == size_t(32) << 20);
    CHECK(cache.take(size_t(29) << 20) == nullptr);  // class 30 MiB
    CHECK(cache.take(size_t(31) << 20) == a);
    CHECK(cache.cached_bytes() == 0);
    CHECK(cache.take(size_t(31) << 20) == nullptr);
    CHECK(cache.keep(a, size_t(32) << 20));
    cache.release_all();  // frees a
    CHECK(cache.cached_bytes() == 0);
  }
#ifdef DPO_WITH_CUDA
  using cuda::CachingAllocator;
  // The allocator's buckets (no GPU needed): 512 B minimum, powers of two up to 1 MiB, then whole 2 MiB.
  CHECK(CachingAllocator::round_size(0) == 512);
  CHECK(CachingAllocator::round_size(1) == 512);
  CHECK(CachingAllocator::round_size(512) == 512);
  CHECK(CachingAllocator::round_size(513) == 1024);
  CHECK(CachingAllocator::round_size(size_t(1) << 20) == size_t(1) << 20);
  CHECK(CachingAllocator::round_size((size_t(1) << 20) + 1) == size_t(2) << 20);
  CHECK(CachingAllocator::round_size(size_t(3) << 20) == size_t(4) << 20);
  CHECK(CachingAllocator::round_size(size_t(4) << 20) == size_t(4) << 20);
  if (!ctx.cuda_or_skip()) return;
  // Out of memory, the allocator releases its cache and retries; the retry fails too here: E_OOM with advice.
  CachingAllocator mem;
  void* p = mem.alloc(size_t(1) << 20);
  mem.free(p);
  CHECK(mem.cached() == size_t(1) << 20);
  CHECK_THROWS_CODE(mem.alloc(size_t(1) << 50, "a test"), ErrorCode::Oom, "--backend cpu");
  CHECK(mem.cached() == 0);
  CHECK(mem.in_use() == 0);
  void* q = mem.alloc(100);  // and it still works
  CHECK(mem.in_use() == 512);
  mem.free(q);
#endif
}

OP_CASE(free) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    const uint64_t base = t.be->bytes_in_use();
    void* p = t.be->alloc(1000);
    t.be->free(p);
    CHECK(t.be->bytes_in_use() == base);
    t.be->free(nullptr);  // ignored
    CHECK(t.be->bytes_in_use() == base);
    // A pointer alloc() did not return is refused where the backend keeps its blocks (plain malloc cannot tell).
    if (t.name != "cpu") {
      void* q = t.be->alloc(4096);
      CHECK_THROWS_CODE(t.be->free(static_cast<char*>(q) + 4), ErrorCode::Internal, "did not return");
      t.be->free(q);
    }
  }
}

OP_CASE(upload) {
  if (!ctx.eval()) return;
  const vector<float> v = randu(1000, -1, 1, 5);
  for (const Target& t : ctx.all()) {
    Arena a(*t.be);
    float* d = a.put(vector<float>(v.size(), 0.0f));
    t.be->upload(d + 10, v.data() + 10, 100 * sizeof(float));  // into the middle of a buffer
    vector<float> want(v.size());
    for (size_t i = 0; i < v.size(); i++) want[i] = i >= 10 && i < 110 ? v[i] : 0.0f;
    check_bits(t.name + " partial upload", a.get(d, v.size()), want);
    t.be->upload(d, v.data(), 0);  // zero bytes: a no-op
    check_bits(t.name + " empty upload", a.get(d, v.size()), want);
  }
}

OP_CASE(download) {
  if (!ctx.eval()) return;
  const vector<float> v = randu(1000, -1, 1, 5);
  std::mt19937 rng(9);
  vector<uint8_t> bytes(4099);
  for (auto& b : bytes) b = uint8_t(rng());
  for (const Target& t : ctx.all()) {
    Arena a(*t.be);
    check_bits(t.name + " upload/download round trip", a.get(a.put(v), v.size()), v);
    CHECK(a.get(a.put(bytes), bytes.size()) == bytes);
    vector<float> part(5, -1.0f);
    t.be->download(part.data(), a.put(v) + 7, 5 * sizeof(float));
    check_bits(t.name + " partial download", part, slice(v, 7, 5));
    t.be->download(part.data(), a.put(v), 0);  // zero bytes: a no-op
    check_bits(t.name + " empty download", part, slice(v, 7, 5));
  }
}

// Queued work is done after synchronize (the GPU runs ops asynchronously on its stream).
OP_CASE(synchronize) {
  if (!ctx.eval()) return;
  const vector<float> x = randu(100003, -1, 1, 6);
  for (const Target& t : ctx.all()) {
    Arena a(*t.be);
    float* d = a.put(x);
    for (int i = 0; i < 4; i++) t.be->scale(d, d, 2.0f, int64_t(x.size()));
    t.be->synchronize();
    const vector<float> got = a.get(d, x.size());
    int bad = 0;
    for (size_t i = 0; i < x.size(); i++) bad += got[i] != x[i] * 16.0f;  // exact: powers of two
    CHECK(bad == 0);
  }
}

OP_CASE(bytes_in_use) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    t.be->synchronize();
    const uint64_t base = t.be->bytes_in_use();
    void* p = t.be->alloc(1000);
    void* q = t.be->alloc(5000);
    CHECK(t.be->bytes_in_use() == base + counted(t, 1000) + counted(t, 5000));
    t.be->free(p);
    CHECK(t.be->bytes_in_use() == base + counted(t, 5000));
    t.be->free(q);
    CHECK(t.be->bytes_in_use() == base);
  }
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
#ifdef DPO_WITH_CUDA
  using cuda::CachingAllocator;
  // The caching allocator: freed blocks are handed out again from their bucket; in use and peak at rounded sizes.
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
  void* p5 = g->alloc(600);  // either cached 1024 B block
  CHECK(p5 == p2 || p5 == p3);
  g->free(p5);
  g->reset_peak();
  CHECK(g->peak_bytes() == base);
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
#endif
}

// The most in use since the last reset, which stays when memory is freed.
OP_CASE(peak_bytes) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    t.be->synchronize();
    t.be->reset_peak();
    const uint64_t base = t.be->bytes_in_use();
    CHECK(t.be->peak_bytes() == base);
    void* p = t.be->alloc(3000);
    void* q = t.be->alloc(7000);
    const uint64_t top = base + counted(t, 3000) + counted(t, 7000);
    t.be->free(p);
    void* r = t.be->alloc(100);
    CHECK(t.be->peak_bytes() == top);
    t.be->free(q);
    t.be->free(r);
    CHECK(t.be->peak_bytes() == top);  // the peak stays until reset
  }
}

OP_CASE(reset_peak) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    void* p = t.be->alloc(20000);
    t.be->free(p);
    void* q = t.be->alloc(300);
    t.be->reset_peak();
    CHECK(t.be->peak_bytes() == t.be->bytes_in_use());  // the peak restarts from what is in use now
    t.be->free(q);
    CHECK(t.be->peak_bytes() == t.be->bytes_in_use() + counted(t, 300));
  }
}

// True only where alloc() memory is host memory host code may read (the plain CPU backend: mirrors may alias it).
OP_CASE(shares_host_memory) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    const bool shares = t.be->shares_host_memory();
    CHECK(shares == (t.name == "cpu"));
    if (!shares) continue;
    float* p = static_cast<float*>(t.be->alloc(4 * sizeof(float)));
    const float v[4] = {1.0f, -2.0f, 3.5f, 0.25f};
    t.be->upload(p, v, sizeof(v));
    CHECK(std::memcmp(p, v, sizeof(v)) == 0);  // host code reads it directly
    t.be->free(p);
  }
}
