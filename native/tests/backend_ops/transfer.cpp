// Cases of the small steps between the big ops (Backend::copy, fill_zero, scatter_rows, gather_rows, axpy, scale,
// dropout, dropout_backward, embedding_backward) on every backend, bit for bit against reference loops written here:
// the semantics of dpo/backend.h with every fp32 product and sum rounded on its own (rn / mul_rn keep GCC from fusing
// them), which the CPU's loops and the CUDA kernels (__fmul_rn / __fadd_rn) both follow. The linear backward ops are
// also checked against finite differences of their forward; the GPU's rules for negative rows / ids (written by no
// one, zero rows, skipped: they live on the device there) are checked on CUDA only, where the CPU throws or trusts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "core/fp_strict.h"
#include "op_checks.h"
#include "random_data.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

// The elementwise data of axpy .. dropout_backward at size n: a mask keeping ~90%, NaN in some dropped entries of xs
// (they must give 0, not NaN), -0 in some entries of y (a dropped dx element is left alone: -0 stays -0).
struct ElementwiseData {
  vector<float> x, xs, y;
  vector<uint8_t> kept;
  float a = 0.3712891f, keep = 1.0f / 0.9f;
};

ElementwiseData elementwise_data(int64_t n) {
  ElementwiseData d;
  const size_t N = size_t(n);
  d.x = randn(N, 1.0f, 31u + uint32_t(n));
  d.y = randn(N, 1.0f, 32u + uint32_t(n));
  std::mt19937 rng(33u + uint32_t(n));
  d.kept.resize(N);
  for (auto& k : d.kept) k = (rng() % 10) != 0;
  d.xs = d.x;
  for (size_t i = 0; i < N; i += 97)
    if (!d.kept[i]) d.xs[i] = std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 1; i < N; i += 89) d.y[i] = -0.0f;
  return d;
}

const int64_t kSizes[] = {1, 1000, 1000003};

// Runs an elementwise op on a backend: `op(be, arena)` returns the device pointer to read back (n floats).
template <class Op>
vector<float> run_n(Backend& be, size_t n, Op op) {
  Arena a(be);
  const float* out = op(be, a);
  return a.get(out, n);
}

}  // namespace

OP_CASE(copy) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all())
    for (const size_t n : {size_t(1), size_t(7), size_t(4099), (size_t(1) << 20) + 3}) {
      std::mt19937 rng(static_cast<uint32_t>(n));
      vector<uint8_t> bytes(n);
      for (auto& b : bytes) b = uint8_t(rng());
      Arena a(*t.be);
      const uint8_t* src = a.put(bytes);
      uint8_t* dst = a.put(vector<uint8_t>(n, 0xA5));
      t.be->copy(dst, src, n);
      CHECK(a.get(dst, n) == bytes);
      if (!t.is_cuda()) t.be->copy(dst, dst, n);  // onto itself (host mirrors may alias): unchanged
      t.be->copy(dst, src, 0);  // empty: a no-op
      CHECK(a.get(dst, n) == bytes);
      if (!t.is_cuda() && n > 1000) {
        // Overlapping ranges on the host (large ones are otherwise split over threads): memmove's result.
        t.be->copy(dst + 1000, dst, n - 1000);
        vector<uint8_t> want(bytes);
        std::memmove(want.data() + 1000, want.data(), n - 1000);
        CHECK(a.get(dst, n) == want);
      }
    }
}

OP_CASE(fill_zero) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all())
    for (const size_t n : {size_t(1), size_t(7), size_t(4099), (size_t(1) << 20) + 3}) {
      std::mt19937 rng(static_cast<uint32_t>(n));
      vector<uint8_t> bytes(n);
      for (auto& b : bytes) b = uint8_t(rng() | 1);
      Arena a(*t.be);
      uint8_t* dst = a.put(bytes);
      const size_t off = n / 3;
      t.be->fill_zero(dst + off, n - off);
      vector<uint8_t> want(bytes);
      std::fill(want.begin() + std::ptrdiff_t(off), want.end(), uint8_t(0));
      CHECK(a.get(dst, n) == want);
      t.be->fill_zero(dst, 0);  // empty: a no-op
      CHECK(a.get(dst, n) == want);
    }
}

// dst row to[r] = src row r, distinct destination rows (a KV-cache write) in a random order; other rows untouched.
OP_CASE(scatter_rows) {
  if (!ctx.eval()) return;
  struct Shape {
    int M, width, R;
  };  // R rows in the big buffer
  for (const Target& t : ctx.all())
    for (const Shape sh :
         {Shape{1, 1, 1}, Shape{5, 37, 9}, Shape{16, 1024, 40}, Shape{300, 65, 301}, Shape{3000, 64, 3500}}) {
      const int M = sh.M, W = sh.width, R = sh.R;
      const auto src = randn(size_t(M) * W, 1.0f, 100u + W);
      const auto big = randn(size_t(R) * W, 1.0f, 101u + W);
      vector<int> perm(static_cast<size_t>(R));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), std::mt19937(7u + R));
      vector<int> to(perm.begin(), perm.begin() + M);
      // Ascending rows (a segment's rows; the CPU splits those over its threads), the others in random order.
      if (M >= 3000) std::sort(to.begin(), to.end());
      vector<float> want(big);
      for (int r = 0; r < M; r++) std::copy_n(&src[size_t(r) * W], W, &want[size_t(to[size_t(r)]) * W]);
      Arena a(*t.be);
      float* dbig = a.put(big);
      t.be->scatter_rows(dbig, a.put(to), a.put(src), M, W);
      check_bits(t.name + " scatter M=" + std::to_string(M) + " width=" + std::to_string(W), a.get(dbig, big.size()),
                 want);
    }
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  // A negative row (a caller bug) writes nothing on the GPU.
  Arena a(*g);
  const auto src = randn(6, 1.0f, 5u), big = randn(9, 1.0f, 6u);
  float* dbig = a.put(big);
  g->scatter_rows(dbig, a.put(vector<int>{2, -1}), a.put(src), 2, 3);
  vector<float> want(big);
  std::copy_n(&src[0], 3, &want[6]);
  check_bits("scatter negative", a.get(dbig, 9), want);
}

// dst row r = src row from[r], any rows, repeats allowed.
OP_CASE(gather_rows) {
  if (!ctx.eval()) return;
  struct Shape {
    int M, width, R;
  };
  for (const Target& t : ctx.all())
    for (const Shape sh :
         {Shape{1, 1, 1}, Shape{5, 37, 9}, Shape{16, 1024, 40}, Shape{300, 65, 301}, Shape{3000, 64, 3500}}) {
      const int M = sh.M, W = sh.width, R = sh.R;
      const auto big = randn(size_t(R) * W, 1.0f, 101u + W);
      const auto from = randi(size_t(M), 0, R - 1, 9u + M);
      vector<float> want(size_t(M) * W);
      for (int r = 0; r < M; r++) std::copy_n(&big[size_t(from[size_t(r)]) * W], W, &want[size_t(r) * W]);
      Arena a(*t.be);
      float* out = a.alloc<float>(want.size());
      t.be->gather_rows(out, a.put(big), a.put(from), M, W);
      check_bits(t.name + " gather M=" + std::to_string(M) + " width=" + std::to_string(W), a.get(out, want.size()),
                 want);
    }
  Backend* g = ctx.cuda_or_skip();
  if (!g) return;
  // A negative row (a caller bug) gives a zero row on the GPU.
  Arena a(*g);
  const auto src = randn(6, 1.0f, 5u), big = randn(9, 1.0f, 6u);
  float* out = a.put(src);
  g->gather_rows(out, a.put(big), a.put(vector<int>{-1, 1}), 2, 3);
  check_bits("gather negative", a.get(out, 6), vector<float>{0, 0, 0, big[3], big[4], big[5]});
}

// y += a * x, the product rounded before the add: the data would show a fused multiply-add.
OP_CASE(axpy) {
  if (!ctx.eval()) return;
  for (const int64_t n : kSizes) {
    const ElementwiseData d = elementwise_data(n);
    vector<float> want(d.x.size());
    size_t fma_differs = 0;
    for (size_t i = 0; i < want.size(); i++) {
      want[i] = rn(d.y[i] + mul_rn(d.a, d.x[i]));
      fma_differs += std::fma(d.a, d.x[i], d.y[i]) != want[i];
    }
    if (n > 1) CHECK(fma_differs > 0);
    for (const Target& t : ctx.all())
      check_bits(t.name + " axpy n=" + std::to_string(n),
                 run_n(*t.be, want.size(),
                       [&](Backend& be, Arena& a) {
                         float* y = a.put(d.y);
                         be.axpy(y, a.put(d.x), d.a, n);
                         return y;
                       }),
                 want);
  }
}

// out = a * x, also in place.
OP_CASE(scale) {
  if (!ctx.eval()) return;
  for (const int64_t n : kSizes) {
    const ElementwiseData d = elementwise_data(n);
    vector<float> want(d.x.size());
    for (size_t i = 0; i < want.size(); i++) want[i] = mul_rn(d.a, d.x[i]);
    for (const Target& t : ctx.all()) {
      check_bits(t.name + " scale n=" + std::to_string(n),
                 run_n(*t.be, want.size(),
                       [&](Backend& be, Arena& a) {
                         float* out = a.alloc(d.x.size());
                         be.scale(out, a.put(d.x), d.a, n);
                         return out;
                       }),
                 want);
      check_bits(t.name + " scale in place",
                 run_n(*t.be, want.size(),
                       [&](Backend& be, Arena& a) {
                         float* x = a.put(d.x);
                         be.scale(x, x, d.a, n);
                         return x;
                       }),
                 want);
    }
  }
}

// out = kept ? x * keep_scale : 0 (dropped NaN entries give 0).
OP_CASE(dropout) {
  if (!ctx.eval()) return;
  for (const int64_t n : kSizes) {
    const ElementwiseData d = elementwise_data(n);
    vector<float> want(d.x.size());
    for (size_t i = 0; i < want.size(); i++) want[i] = d.kept[i] ? mul_rn(d.xs[i], d.keep) : 0.0f;
    for (const Target& t : ctx.all())
      check_bits(t.name + " dropout n=" + std::to_string(n),
                 run_n(*t.be, want.size(),
                       [&](Backend& be, Arena& a) {
                         float* out = a.alloc(d.x.size());
                         be.dropout(out, a.put(d.xs), a.put(d.kept), d.keep, n);
                         return out;
                       }),
                 want);
  }
}

// dx += kept ? dout * keep_scale : (nothing).
OP_CASE(dropout_backward) {
  if (ctx.eval())
    for (const int64_t n : kSizes) {
      const ElementwiseData d = elementwise_data(n);
      vector<float> want(d.x.size());
      for (size_t i = 0; i < want.size(); i++) want[i] = d.kept[i] ? rn(d.y[i] + mul_rn(d.x[i], d.keep)) : d.y[i];
      for (const Target& t : ctx.all())
        check_bits(t.name + " dropout_backward n=" + std::to_string(n),
                   run_n(*t.be, want.size(),
                         [&](Backend& be, Arena& a) {
                           float* dx = a.put(d.y);
                           be.dropout_backward(dx, a.put(d.x), a.put(d.kept), d.keep, n);
                           return dx;
                         }),
                   want);
    }
  if (!ctx.grad()) return;
  // The forward is linear: its gradient is keep_scale where kept, 0 elsewhere.
  const int64_t n = 300;
  const ElementwiseData d = elementwise_data(n);
  const auto G = randu(size_t(n), -1, 1, 7);
  auto xd = to_d(d.x);
  auto loss = [&] {
    double s = 0;
    for (size_t i = 0; i < xd.size(); i++) s += (d.kept[i] ? xd[i] * d.keep : 0.0) * G[i];
    return s;
  };
  const auto gx = numeric_grad(xd, loss);
  for (const Target& t : ctx.all())
    check_grad(t.name + " dropout dx",
               run_n(*t.be, size_t(n),
                     [&](Backend& be, Arena& a) {
                       float* dx = a.put(vector<float>(size_t(n), 0.0f));
                       be.dropout_backward(dx, a.put(G), a.put(d.kept), d.keep, n);
                       return dx;
                     }),
               gx);
}

// dtable[ids[m]] += dout[m], rows added in order m = 0..M-1: few table rows, many repeated ids whose sums depend on
// the order; M > 1024 crosses the GPU's id chunks, M >= 128 splits the ids over several partitions.
OP_CASE(embedding_backward) {
  struct Shape {
    int M, C, V;
  };
  auto run = [](Backend& be, const vector<float>& table0, const vector<float>& dout, const vector<int>& ids, int C) {
    Arena a(be);
    float* dt = a.put(table0);
    be.embedding_backward(dt, a.put(dout), a.put(ids), int(ids.size()), C);
    return a.get(dt, table0.size());
  };
  if (ctx.eval()) {
    Backend* g = ctx.cuda_or_skip();
    for (const Shape sh : {Shape{1, 1, 1}, Shape{5, 37, 3}, Shape{300, 257, 17}, Shape{4100, 96, 50}}) {
      const int M = sh.M, C = sh.C, V = sh.V;
      const auto dout = randn(size_t(M) * C, 1.0f, 51u + M);
      const auto table0 = randn(size_t(V) * C, 0.1f, 52u + M);
      auto ids = randi(size_t(M), 0, V - 1, 53u + M);
      auto reference = [&] {
        vector<float> want(table0);
        for (int m = 0; m < M; m++) {
          if (ids[size_t(m)] < 0) continue;
          for (int c = 0; c < C; c++) want[size_t(ids[size_t(m)]) * C + c] += dout[size_t(m) * C + c];
        }
        return want;
      };
      const std::string d = " M=" + std::to_string(M) + " C=" + std::to_string(C) + " V=" + std::to_string(V);
      for (const Target& t : ctx.hosts())
        check_bits(t.name + " dtable" + d, run(*t.be, table0, dout, ids, C), reference());
      if (!g) continue;
      if (M > 2) ids[1] = -1;  // skipped on the GPU (a caller bug: the CPU op trusts its ids)
      check_bits("cuda dtable" + d, run(*g, table0, dout, ids, C), reference());
    }
  }
  if (!ctx.grad()) return;
  // The forward (a row lookup) is linear in the table: dtable[v] = sum of G rows whose id is v.
  const int M = 6, C = 5, V = 4;
  const vector<int> ids = {2, 0, 2, 3, 2, 0};
  const auto G = randu(size_t(M) * C, -1, 1, 9);
  auto td = to_d(randu(size_t(V) * C, -1, 1, 10));
  auto loss = [&] {
    double s = 0;
    for (int m = 0; m < M; m++)
      for (int c = 0; c < C; c++) s += td[size_t(ids[size_t(m)]) * C + c] * G[size_t(m) * C + c];
    return s;
  };
  const auto gt = numeric_grad(td, loss);
  for (const Target& t : ctx.all())
    check_grad(t.name + " embedding dtable", run(*t.be, vector<float>(size_t(V) * C, 0.0f), G, ids, C), gt);
}
