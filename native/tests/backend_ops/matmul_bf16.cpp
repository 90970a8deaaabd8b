// Cases of the bf16-weight products (has_bf16_matmul, matmul_bf16, matmul_bf16_backward_input; docs/cpu-kernels.md):
// a backend that offers them must give the bits of matmul / matmul_backward's dx on the exactly widened fp32
// weights, and so also the double reference and finite differences; a backend that does not offer them says so.
#include <string>
#include <vector>

#include "backend_ops/matrix_shapes.h"
#include "backend_ops/registry.h"
#include "core/half.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

constexpr double kTolRef = 1e-5;

// Random bf16 weights and the fp32 values they widen to exactly.
struct Bf16Weights {
  vector<uint16_t> bits;
  vector<float> widened;
};

Bf16Weights random_bf16(size_t n, uint32_t seed) {
  const vector<float> w = randu(n, -1, 1, seed);
  Bf16Weights b;
  for (float v : w) {
    b.bits.push_back(f32_to_bf16(v));
    b.widened.push_back(bf16_to_f32(b.bits.back()));
  }
  return b;
}

// The backends that offer the products; the others are reported once.
vector<Target> offering(const OpContext& ctx, const char* op) {
  vector<Target> out;
  for (const Target& t : ctx.all()) {
    if (t.be->has_bf16_matmul()) out.push_back(t);
    else std::printf("  %s: %s not offered (the model gives it fp32 weights)\n", t.name.c_str(), op);
  }
  return out;
}

// out[M,N] = x[M,K] . w[N,K]^T with bf16 w, and the same product through matmul on the widened weights.
vector<float> run_bf16(Backend& be, const vector<float>& x, const vector<uint16_t>& w, int M, int K, int N) {
  Arena a(be);
  float* out = a.alloc(size_t(M) * N);
  be.matmul_bf16(out, a.put(x), a.put(w), M, K, N);
  return a.get(out, size_t(M) * N);
}

vector<float> run_f32(Backend& be, const vector<float>& x, const vector<float>& w, int M, int K, int N) {
  Arena a(be);
  float* out = a.alloc(size_t(M) * N);
  be.matmul(out, a.put(x), a.put(w), nullptr, M, K, N);
  return a.get(out, size_t(M) * N);
}

// dx[M,K] += dout[M,N] . w[N,K], from an initial dx: bf16 weights, and matmul_backward (dx only) on the widened ones.
vector<float> run_bf16_dx(Backend& be, const vector<float>& dout, const vector<uint16_t>& w, const vector<float>& dx0,
                          int M, int K, int N) {
  Arena a(be);
  float* dx = a.put(dx0);
  be.matmul_bf16_backward_input(dx, a.put(dout), a.put(w), M, K, N);
  return a.get(dx, dx0.size());
}

vector<float> run_f32_dx(Backend& be, const vector<float>& dout, const vector<float>& w, const vector<float>& dx0,
                         int M, int K, int N) {
  Arena a(be);
  float* dx = a.put(dx0);
  be.matmul_backward(dx, nullptr, nullptr, a.put(dout), nullptr, a.put(w), M, K, N);
  return a.get(dx, dx0.size());
}

}  // namespace

OP_CASE(has_bf16_matmul) {
  if (!ctx.eval()) return;
  // The CPU backends keep a bf16 checkpoint's lm_head as bf16 (docs/cpu-kernels.md); they must say so.
  for (const Target& t : ctx.hosts())
    if (!t.be->has_bf16_matmul()) {
      std::printf("  %s: has_bf16_matmul() is false on a CPU backend\n", t.name.c_str());
      failures()++;
    }
}

OP_CASE(matmul_bf16) {
  if (!ctx.eval()) return;
  const vector<Target> targets = offering(ctx, "matmul_bf16");
  uint32_t seed = 300;
  for (int K : kGridKs)
    for (int N : kGridNs)
      for (int M : kGridMs) {
        const Bf16Weights w = random_bf16(size_t(N) * K, seed++);
        const vector<float> x = randu(size_t(M) * K, -1, 1, seed++);
        vector<double> ref, scale;
        ref_matmul(ref, &scale, to_d(x), to_d(w.widened), nullptr, M, K, N);
        for (const Target& t : targets) {
          const vector<float> got = run_bf16(*t.be, x, w.bits, M, K, N);
          check_bits(t.name + " matmul_bf16 vs matmul " + dims(M, K, N), got, run_f32(*t.be, x, w.widened, M, K, N));
          check_scaled(t.name + " matmul_bf16 " + dims(M, K, N), got, ref, scale, kTolRef);
        }
      }
}

OP_CASE(matmul_bf16_backward_input) {
  const vector<Target> targets = offering(ctx, "matmul_bf16_backward_input");
  if (ctx.grad()) {
    // dx against central differences of the double forward on the widened weights, accumulated into a nonzero dx.
    const int M = 3, K = 19, N = 5;
    const Bf16Weights w = random_bf16(size_t(N) * K, 1);
    const vector<float> x = randu(size_t(M) * K, -1, 1, 2), G = randu(size_t(M) * N, -1, 1, 3);
    const vector<float> dx0 = randu(x.size(), -1, 1, 4);
    vector<double> xd = to_d(x), wd = to_d(w.widened), out;
    const vector<double> gx = numeric_grad(xd, [&] {
      ref_matmul(out, nullptr, xd, wd, nullptr, M, K, N);
      return dot_loss(out, G);
    });
    for (const Target& t : targets)
      check_grad(t.name + " matmul_bf16 dx", minus(run_bf16_dx(*t.be, G, w.bits, dx0, M, K, N), dx0), gx);
  }
  if (!ctx.eval()) return;
  uint32_t seed = 600;
  for (int K : kGridKs)
    for (int N : kGridNs)
      for (int M : kGridMs) {
        const Bf16Weights w = random_bf16(size_t(N) * K, seed++);
        const vector<float> dout = randu(size_t(M) * N, -1, 1, seed++), dx0 = randu(size_t(M) * K, -1, 1, seed++);
        for (const Target& t : targets)
          check_bits(t.name + " matmul_bf16 dx vs matmul dx " + dims(M, K, N),
                     run_bf16_dx(*t.be, dout, w.bits, dx0, M, K, N), run_f32_dx(*t.be, dout, w.widened, dx0, M, K, N));
      }
}
