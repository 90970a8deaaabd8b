// Cases of Backend::matmul_nf4, matmul_nf4_many, matmul_nf4_backward_input and prepare_nf4: the host backends against
// the exact-input double reference (bf16(x) . bf16(storage(dequant W))^T, docs/reference/linear4bit.md) and within bf16
// error of the unrounded product; one-hot probes that pick single weights (exact on every backend, all storage dtypes,
// fp16 subnormal scales); the input gradient against finite differences; CUDA against the CPU within kTolNf4
// (tensor-core accumulation order) with bitwise batch invariance across its decode and prefill tiles, and its weight
// cache.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend_ops/matrix_shapes.h"
#include "backend_ops/registry.h"
#include "op_checks.h"
#include "random_data.h"
#include "reference_ops.h"

#ifdef DPO_WITH_CUDA
#include "cuda/caching_allocator.cuh"
#endif

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

constexpr double kTolRef = 1e-5, kTolNf4 = 1e-3;

vector<float> run_nf4(Backend& be, const vector<float>& x, const Nf4Matrix& w, const vector<float>* bias, int M) {
  Arena a(be);
  float* out = a.alloc(size_t(M) * w.rows);
  be.matmul_nf4(out, a.put(x), w, bias ? a.put(*bias) : nullptr, M);
  return a.get(out, size_t(M) * w.rows);
}

vector<float> run_nf4_backward(Backend& be, const vector<float>& dout, const Nf4Matrix& w, const vector<float>& dx0,
                               int M) {
  Arena a(be);
  float* dx = a.put(dx0);
  be.matmul_nf4_backward_input(dx, a.put(dout), w, M);
  return a.get(dx, dx0.size());
}

vector<float> identity(int n) {
  vector<float> v(size_t(n) * n, 0.0f);
  for (int i = 0; i < n; i++) v[size_t(i) * n + i] = 1.0f;
  return v;
}

float round_storage(float v, Nf4StorageDType t) {
  return t == Nf4StorageDType::F16 ? round_fp16(v) : t == Nf4StorageDType::BF16 ? round_bf16(v) : v;
}

// The reference quantizes weights already in the storage dtype.
Nf4Matrix make_nf4(int N, int K, Nf4StorageDType t, uint32_t seed, float sigma = 0.05f) {
  vector<float> w = randn(size_t(N) * K, sigma, seed);
  for (float& v : w) v = round_storage(v, t);
  return nf4_quantize(w.data(), N, K, t);
}

const char* dtype_name(Nf4StorageDType t) {
  return t == Nf4StorageDType::F16 ? "f16" : t == Nf4StorageDType::BF16 ? "bf16" : "f32";
}

void nf4_forward_case(const OpContext& ctx, Backend* g, int M, int K, int N, Nf4StorageDType t, uint32_t seed,
                      bool with_bias) {
  const Nf4Matrix w = make_nf4(N, K, t, seed);
  const vector<float> x70 = randu(size_t(70) * K, -2, 2, seed + 1), bias = randu(N, -1, 1, seed + 2);
  const vector<float>* b = with_bias ? &bias : nullptr;
  const vector<float> x = rows_of(x70, 0, M, K);
  const vector<double> bd = to_d(bias);
  vector<double> ref, scale;
  ref_matmul(ref, &scale, to_d(bf16_all(x)), to_d(nf4_weights_bf16(w)), b ? bd.data() : nullptr, M, K, N);
  const std::string d = dims(M, K, N) + " " + dtype_name(t);
  for (const Target& tg : ctx.hosts())
    check_scaled(tg.name + " nf4 " + d, run_nf4(*tg.be, x, w, b, M), ref, scale, kTolRef);
  if (!g) return;
  const vector<float> c = run_nf4(ctx.cpu(), x, w, b, M);
  const vector<float> r = run_nf4(*g, x, w, b, M);
  check_scaled("cuda nf4 " + d, r, c, scale, kTolNf4);
  if (M != 70) return;
  // Batch invariance across both kernel shapes (M <= 16 decode tiles, larger prefill tiles): bitwise rows.
  for (int m : {0, 15, 69}) {
    const vector<float> one = run_nf4(*g, rows_of(x70, m, 1, K), w, b, 1);
    check_bits("cuda nf4 row " + std::to_string(m) + " M=1 vs M=70 " + d, one, rows_of(r, m, 1, N));
  }
  check_bits("cuda nf4 rows 0..2 M=3 vs M=70 " + d, run_nf4(*g, x70, w, b, 3), rows_of(r, 0, 3, N));
  check_bits("cuda nf4 rows 0..16 M=17 vs M=70 " + d, run_nf4(*g, x70, w, b, 17), rows_of(r, 0, 17, N));
}

void nf4_backward_case(const OpContext& ctx, Backend* g, int M, int K, int N, Nf4StorageDType t, uint32_t seed) {
  const Nf4Matrix w = make_nf4(N, K, t, seed);
  const vector<float> wq = nf4_weights_bf16(w);
  const vector<float> dout70 = randu(size_t(70) * N, -2, 2, seed + 1), dx70 = randu(size_t(70) * K, -1, 1, seed + 2);
  const vector<float> dout = rows_of(dout70, 0, M, N), dx0 = rows_of(dx70, 0, M, K);
  vector<double> ref, scale;
  ref_matmul_dx(ref, scale, dx0, bf16_all(dout), wq, M, K, N);
  const std::string d = dims(M, K, N) + " " + dtype_name(t);
  for (const Target& tg : ctx.hosts())
    check_scaled(tg.name + " nf4 dx " + d, run_nf4_backward(*tg.be, dout, w, dx0, M), ref, scale, kTolRef);
  if (!g) return;
  const vector<float> c = run_nf4_backward(ctx.cpu(), dout, w, dx0, M);
  const vector<float> r = run_nf4_backward(*g, dout, w, dx0, M);
  check_scaled("cuda nf4 dx " + d, r, c, scale, kTolNf4);
  if (M != 70) return;
  for (int m : {0, 15, 69}) {
    const vector<float> one = run_nf4_backward(*g, rows_of(dout70, m, 1, N), w, rows_of(dx70, m, 1, K), 1);
    check_bits("cuda nf4 dx row " + std::to_string(m) + " M=1 vs M=70 " + d, one, rows_of(r, m, 1, K));
  }
  const vector<float> r5 = run_nf4_backward(*g, dout70, w, rows_of(dx70, 0, 5, K), 5);
  check_bits("cuda nf4 dx rows 0..4 M=5 vs M=70 " + d, r5, rows_of(r, 0, 5, K));
}

// Exact probes of the fused dequantization: x = identity gives out = Wq^T and dout = identity gives dx = Wq, each
// element a single product plus exact zeros, so every backend must agree exactly whatever its summation order (any
// wrong nibble, absmax block or rounding step shows here, including blocks crossing rows at K = 172 and 37).
void dequant_probes(const OpContext& ctx) {
  Backend* g = ctx.cuda_or_skip();
  uint32_t seed = 4000;
  for (Nf4StorageDType t : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32})
    for (int K : kGridKs)
      for (int N : {8, 61}) {
        const Nf4Matrix w = make_nf4(N, K, t, seed++);
        const vector<float> wq = nf4_weights_bf16(w);
        vector<float> wt(size_t(K) * N);  // Wq^T (K,N)
        for (int n = 0; n < N; n++)
          for (int k = 0; k < K; k++) wt[size_t(k) * N + n] = wq[size_t(n) * K + k];
        const std::string d = dims(K, K, N) + " " + dtype_name(t);
        vector<Target> targets = ctx.hosts();
        if (g) targets.push_back({"cuda", g});
        for (const Target& tg : targets) {
          check_equal(tg.name + " nf4 identity " + d, run_nf4(*tg.be, identity(K), w, nullptr, K), wt);
          check_equal(tg.name + " nf4 dx identity " + d,
                      run_nf4_backward(*tg.be, identity(N), w, vector<float>(size_t(N) * K, 0.0f), N), wq);
          // The decode shape on the same probe: the first rows of the identity.
          const int few = std::min(K, 5);
          check_equal(tg.name + " nf4 identity (decode rows) " + d,
                      run_nf4(*tg.be, rows_of(identity(K), 0, few, K), w, nullptr, few), rows_of(wt, 0, few, N));
        }
      }
  // On the host backends, bitwise: weights at sigma 3e-6 make fp16 scales subnormal.
  const int K = 172, N = 12;
  for (float sigma : {0.05f, 3e-6f})
    for (Nf4StorageDType t : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
      const Nf4Matrix w = make_nf4(N, K, t, 300, sigma);
      const vector<float> wb = nf4_weights_bf16(w);
      vector<float> wt(size_t(K) * N);
      for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) wt[size_t(k) * N + n] = wb[size_t(n) * K + k];
      for (const Target& tg : ctx.hosts()) {
        check_bits(tg.name + " nf4 one-hot rows, sigma " + std::to_string(sigma),
                   run_nf4(*tg.be, identity(K), w, nullptr, K), wt);
        check_bits(tg.name + " nf4 one-hot dout, sigma " + std::to_string(sigma),
                   run_nf4_backward(*tg.be, identity(N), w, vector<float>(size_t(N) * K, 0.0f), N), wb);
      }
    }
}

}  // namespace

OP_CASE(matmul_nf4) {
  if (!ctx.eval()) return;
  // Odd shapes on the host backends: the bf16 reference within 1e-5, the unrounded fp32 product within bf16 error.
  const int shapes[][3] = {{1, 64, 64}, {3, 172, 64}, {7, 64, 172}, {3, 100, 50}, {16, 320, 96}};
  uint32_t seed = 200;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto wf = randn(size_t(N) * K, 0.05f, seed++);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
    const auto x = randu(size_t(M) * K, -2, 2, seed++);
    const auto bias = randu(size_t(N), -1, 1, seed++);
    const vector<double> bd = to_d(bias);
    vector<double> ref, scale, ref32, scale32;
    ref_matmul(ref, &scale, to_d(bf16_all(x)), to_d(nf4_weights_bf16(w)), bd.data(), M, K, N);
    vector<float> deq(size_t(N) * K);
    nf4_dequantize(w, deq.data());
    ref_matmul(ref32, &scale32, to_d(x), to_d(deq), bd.data(), M, K, N);
    for (const Target& t : ctx.hosts()) {
      const vector<float> out = run_nf4(*t.be, x, w, &bias, M);
      check_scaled(t.name + " nf4 vs bf16 ref " + dims(M, K, N), out, ref, scale, 1e-5);
      check_scaled(t.name + " nf4 vs fp32 ref " + dims(M, K, N), out, ref32, scale32, 1.0 / 128);
    }
  }
  // The parity grid (F16 storage), then the other storage dtypes.
  Backend* g = ctx.cuda_or_skip();
  seed = 2000;
  for (int K : kGridKs)
    for (int N : kGridNs)
      for (int M : kGridMs) nf4_forward_case(ctx, g, M, K, N, Nf4StorageDType::F16, seed += 3, (M + K) % 2 == 0);
  for (Nf4StorageDType t : {Nf4StorageDType::BF16, Nf4StorageDType::F32})
    for (int M : {3, 70}) nf4_forward_case(ctx, g, M, 172, 61, t, seed += 3, true);
  dequant_probes(ctx);
  if (!g) return;
  // A matrix without the host absmax cache (dequantized on upload) gives the same bits; the device copy is cached.
  const int M = 9, K = 172, N = 61;
  const Nf4Matrix w = make_nf4(N, K, Nf4StorageDType::F16, 77);
  Nf4Matrix bare = w;
  bare.absmax.clear();
  const vector<float> x = randu(size_t(M) * K, -1, 1, 78);
  const vector<float> a = run_nf4(*g, x, w, nullptr, M);
  check_bits("cuda nf4 cached call", run_nf4(*g, x, w, nullptr, M), a);
  check_bits("cuda nf4 without host absmax", run_nf4(*g, x, bare, nullptr, M), a);
}

OP_CASE(matmul_nf4_many) {
  if (!ctx.eval()) return;
  // q, k, v of a GQA layer against one x (N = 96, 32, 32; biases on one), one matrix at a time through matmul_nf4 on
  // the same backend: the same bits, on every backend (the CUDA one runs the default, one matmul_nf4 per matrix).
  // M = 3 (the CPU's register path) and 40 (tiled).
  const int K = 128, Ns[3] = {96, 32, 32};
  uint32_t seed = 900;
  vector<Nf4Matrix> ws;
  for (int N : Ns) ws.push_back(nf4_quantize(randn(size_t(N) * K, 0.05f, seed++).data(), N, K));
  const auto bias = randu(32, -1, 1, seed++);
  for (int M : {3, 40}) {
    const auto x = randu(size_t(M) * K, -2, 2, seed++);
    for (const Target& t : ctx.all()) {
      Arena a(*t.be);
      float* outs[3];
      const Nf4Matrix* mats[3] = {&ws[0], &ws[1], &ws[2]};
      const float* biases[3] = {nullptr, a.put(bias), nullptr};
      for (int i = 0; i < 3; i++) outs[i] = a.alloc(size_t(M) * Ns[i]);
      t.be->matmul_nf4_many(outs, a.put(x), mats, biases, 3, M);
      for (int i = 0; i < 3; i++) {
        const vector<float> one = run_nf4(*t.be, x, ws[size_t(i)], i == 1 ? &bias : nullptr, M);
        CHECK(same_bits(a.get(outs[i], size_t(M) * Ns[i]), one));
      }
    }
  }
}

OP_CASE(matmul_nf4_backward_input) {
  if (ctx.grad()) {
    // The forward is linear in bf16(x); treating that rounding as identity, d/dx = dout . W_bf16. The op rounds dout
    // to bf16 (docs/reference/linear4bit.md, backward), so agreement is at bf16 level (rtol 1e-2 per element).
    const int M = 2, K = 70, N = 9;
    const auto wf = randn(size_t(N) * K, 0.1f, 1);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
    const auto wb = to_d(nf4_weights_bf16(w));
    const auto G = randu(size_t(M) * N, -1, 1, 2);
    auto xd = to_d(randu(size_t(M) * K, -1, 1, 3));
    vector<double> out;
    auto loss = [&] {
      ref_matmul(out, nullptr, xd, wb, nullptr, M, K, N);
      return dot_loss(out, G);
    };
    const auto gx = numeric_grad(xd, loss);
    for (const Target& t : ctx.all())
      check_grad(t.name + " nf4 dx", run_nf4_backward(*t.be, G, w, vector<float>(size_t(M) * K, 0.0f), M), gx, 1e-2,
                 1e-3);
  }
  if (!ctx.eval()) return;
  // Odd shapes, accumulating into nonzero dx, on the host backends.
  const int shapes[][3] = {{1, 64, 64}, {3, 172, 64}, {7, 64, 172}, {5, 300, 70}, {130, 96, 40}};
  uint32_t seed = 400;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto wf = randn(size_t(N) * K, 0.05f, seed++);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
    const auto dout = randu(size_t(M) * N, -1, 1, seed++);
    const auto dx0 = randu(size_t(M) * K, -1, 1, seed++);
    const auto wb = to_d(nf4_weights_bf16(w));
    const auto db = to_d(bf16_all(dout));
    vector<double> ref(size_t(M) * K), scale(size_t(M) * K);
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++) {
        double sum = 0, a = 0;
        for (int n = 0; n < N; n++) {
          sum += db[size_t(m) * N + n] * wb[size_t(n) * K + k];
          a += std::fabs(db[size_t(m) * N + n] * wb[size_t(n) * K + k]);
        }
        ref[size_t(m) * K + k] = dx0[size_t(m) * K + k] + sum;  // accumulates
        scale[size_t(m) * K + k] = a + std::fabs(dx0[size_t(m) * K + k]);
      }
    for (const Target& t : ctx.hosts())
      check_scaled(t.name + " nf4 dx " + dims(M, K, N), run_nf4_backward(*t.be, dout, w, dx0, M), ref, scale, 1e-5);
  }
  Backend* g = ctx.cuda_or_skip();
  seed = 3000;
  for (int K : kGridKs)
    for (int N : kGridNs)
      for (int M : kGridMs) nf4_backward_case(ctx, g, M, K, N, Nf4StorageDType::F16, seed += 3);
  for (Nf4StorageDType t : {Nf4StorageDType::BF16, Nf4StorageDType::F32})
    nf4_backward_case(ctx, g, 70, 172, 61, t, seed += 3);
}

// The overwriting form into a dx of NaN gives the bits of the accumulating form into zeros, on every backend (the
// base class's form fills and accumulates; the CPU's stores 0 + sum): whole and ragged column blocks, an empty sum,
// and a zero dout row. Its gradient is the accumulating form's, checked above.
OP_CASE(matmul_nf4_backward_input_overwrite) {
  if (!ctx.eval()) return;
  const int shapes[][3] = {{3, 172, 64}, {37, 768, 70}, {5, 300, 70}, {4, 64, 0}};
  uint32_t seed = 4100;
  for (auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    const auto wf = randn(size_t(std::max(N, 1)) * K, 0.05f, seed++);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
    auto dout = randu(size_t(M) * size_t(std::max(N, 1)), -1, 1, seed++);
    for (int n = 0; n < N; n++) dout[size_t(n)] = -0.0f;
    for (const Target& t : ctx.all()) {
      const vector<float> want = run_nf4_backward(*t.be, dout, w, vector<float>(size_t(M) * K, 0.0f), M);
      Arena a(*t.be);
      float* dx = a.put(vector<float>(size_t(M) * K, std::nanf("")));
      t.be->matmul_nf4_backward_input_overwrite(dx, a.put(dout), w, M);
      check_bits(t.name + " nf4 dx overwritten " + dims(M, K, N), a.get(dx, size_t(M) * K), want);
    }
  }
}

// prepare_nf4 makes the weight resident ahead of its first use: the products are the same bits with and without
// it, and on the GPU the weight's memory (packed nibbles + fp32 absmax, at the allocator's rounded sizes) is counted
// in use from the prepare on, and not again at the first product.
OP_CASE(prepare_nf4) {
  if (!ctx.eval()) return;
  const int M = 3, K = 96, N = 40;
  const auto wf = randn(size_t(N) * K, 0.05f, 71u);
  const auto x = randu(size_t(M) * K, -1, 1, 72u);
  for (const Target& t : ctx.all()) {
    const Nf4Matrix unprepared = nf4_quantize(wf.data(), N, K);
    const vector<float> want = run_nf4(*t.be, x, unprepared, nullptr, M);
    const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
    Arena a(*t.be);
    float* out = a.alloc(size_t(M) * N);
    const float* dx = a.put(x);
    t.be->synchronize();
    const uint64_t before = t.be->bytes_in_use();
    t.be->prepare_nf4(w);
    t.be->synchronize();
    const uint64_t prepared = t.be->bytes_in_use();
    t.be->matmul_nf4(out, dx, w, nullptr, M);
    t.be->synchronize();
    CHECK(t.be->bytes_in_use() == prepared);  // nothing more at the first use
    check_bits(t.name + " nf4 after prepare", a.get(out, size_t(M) * N), want);
#ifdef DPO_WITH_CUDA
    using dpo::cuda::CachingAllocator;
    if (t.is_cuda()) {
      const uint64_t weights = CachingAllocator::round_size(size_t(N) * K / 2) +
                               CachingAllocator::round_size(size_t(w.blocks()) * sizeof(float));
      CHECK(prepared == before + weights);
      continue;
    }
#endif
    CHECK(prepared == before);  // the host backends use the host matrix itself
  }
}
