// `dpo-tool kernel-bench`: GFLOP/s of one CPU matmul or attention kernel at one shape (BENCHMARKS.md's per-kernel
// numbers).
// Reports the median over --reps calls by wall clock and by process CPU time: on a machine shared with other work
// the CPU-time rate (FLOPs per CPU-second of this process) is the steadier of the two.
//   dpo-tool kernel-bench --op matmul|matmul-dx|matmul-dw|bf16|bf16-dx|bf16-argmax|nf4|nf4-dx --M 160 --K 768 --N 2048
//                         [--reps 20] [--threads N] [--storage f16|bf16|f32] [--copies C]
//   (--storage: the 4-bit matrix's storage dtype: f16 for every model quantized at load, as transformers casts the
//   checkpoint to fp16 first (docs/reference/precision.md#loading), a pre-quantized checkpoint's own otherwise. It
//   picks the block tables' rounding, so the nf4 ops' cost depends on it; f16 by default. --copies: nf4 ops run over C
//   separately allocated copies of the matrix in turn, each repetition timing all C, so that the weights come from
//   memory as a decode step reads them rather than from the cache a single small matrix stays in; 1 by default)
//   dpo-tool kernel-bench --op attention|attention-dx --M T --K head_dim --N heads: causal self-attention of one
//                         sequence of T tokens (the backward from the forward's probabilities)
#include <algorithm>
#include <cstdio>
#include <memory>
#include <new>
#include <random>
#include <vector>

#include "commands.h"
#include "core/half.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace dpo::tool {
namespace {

// Buffers on cache lines, as the CPU backend allocates tensors (docs/cpu-kernels.md#cache-line-aligned-tensors): a
// std::vector's data sits 16 bytes into a line, where every 16-float load straddles two and the kernels that read
// tensors in place measured slower than they run in the engine.
template <class T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const LineAllocator<U>&) const {
    return true;
  }
};
using Floats = std::vector<float, LineAllocator<float>>;

Floats random_values(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  Floats v(n);
  for (float& x : v) x = d(rng);
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int cmd_kernel_bench(const Args& a) {
  const std::string op = get(a, "op");
  const int M = get_int(a, "M"), K = get_int(a, "K"), N = get_int(a, "N");
  const int reps = get_int(a, "reps", "20");
  if (M < 1 || K < 1 || N < 1 || reps < 1) throw EngineError(ErrorCode::BadInput, "--M, --K, --N, --reps must be >= 1");
  if (a.count("threads")) set_cpu_thread_count(get_int(a, "threads"));

  const auto x = random_values(size_t(M) * K, 1.0f, 1), w = random_values(size_t(N) * K, 0.05f, 2);
  const auto dout = random_values(size_t(M) * N, 1.0f, 3);
  Floats out(size_t(M) * N), dx(size_t(M) * K), dw(size_t(N) * K);
  Nf4Matrix q;
  const int copies = get_int(a, "copies", "1");
  if (copies < 1) throw EngineError(ErrorCode::BadInput, "--copies must be >= 1");
  std::vector<Nf4Matrix> more_copies;  // copies 2..C
  if (op == "nf4" || op == "nf4-dx") {
    const std::string storage = a.count("storage") ? get(a, "storage") : "f16";
    if (storage != "f16" && storage != "bf16" && storage != "f32")
      throw EngineError(ErrorCode::BadInput, "--storage must be f16, bf16 or f32");
    q = nf4_quantize(w.data(), N, K,
                     storage == "bf16"  ? Nf4StorageDType::BF16
                     : storage == "f32" ? Nf4StorageDType::F32
                                        : Nf4StorageDType::F16);
    cpu::matmul_nf4_prepare(q);  // as the CPU backend does at load (the AVX2 set's decode byte tables)
    for (int c = 1; c < copies; c++) {
      more_copies.push_back(q);
      cpu::matmul_nf4_prepare(more_copies.back());
    }
  }
  std::vector<uint16_t, LineAllocator<uint16_t>> wb;  // the bf16 lm_head's storage: w's values truncated to bf16 bits
  if (op == "bf16" || op == "bf16-dx" || op == "bf16-argmax")
    for (float v : w) wb.push_back(uint16_t(f32_bits(v) >> 16));
  // bf16-argmax: the greedy tokens of the bf16 product through its int8 sketch, as the CPU backend decodes; the FLOPs
  // counted are the product's, so its rate compares with bf16's directly.
  std::unique_ptr<Bf16ArgmaxSketch> sketch;
  std::vector<int> tokens(static_cast<size_t>(M));
  if (op == "bf16-argmax") sketch = sketch_bf16_rows(wb.data(), K, N);

  // Attention: q, k, v, dout (T, NH*HD) with HD = --K and NH = --N; probs (NH, T, T) from one forward.
  const bool attention = op == "attention" || op == "attention-dx";
  const size_t qkv = attention ? size_t(M) * K * N : 0;
  const auto aq = random_values(qkv, 1.0f, 4), ak = random_values(qkv, 1.0f, 5), av = random_values(qkv, 1.0f, 6);
  const auto adout = random_values(qkv, 1.0f, 7);
  std::vector<int> qpos;
  Floats probs, dq(qkv), dk(qkv), dv(qkv), aout(qkv);
  if (attention) {
    for (int t = 0; t < M; t++) qpos.push_back(t);
    probs.resize(size_t(N) * M * M);
    cpu::attention_forward(aout.data(), probs.data(), aq.data(), ak.data(), av.data(), qpos.data(), nullptr, 1, M, M, N,
                           N, K);
  }

  auto run = [&] {
    if (op == "attention")
      cpu::attention_forward(aout.data(), probs.data(), aq.data(), ak.data(), av.data(), qpos.data(), nullptr, 1, M, M,
                             N, N, K);
    else if (op == "attention-dx")
      cpu::attention_backward(dq.data(), dk.data(), dv.data(), adout.data(), probs.data(), aq.data(), ak.data(),
                              av.data(), 1, M, M, N, N, K);
    else if (op == "matmul") cpu::matmul_forward(out.data(), x.data(), w.data(), nullptr, M, K, N);
    else if (op == "matmul-dx")
      cpu::matmul_backward(dx.data(), nullptr, nullptr, dout.data(), x.data(), w.data(), M, K, N);
    else if (op == "matmul-dw")
      cpu::matmul_backward(nullptr, dw.data(), nullptr, dout.data(), x.data(), w.data(), M, K, N);
    else if (op == "bf16") cpu::matmul_bf16_forward(out.data(), x.data(), wb.data(), M, K, N);
    else if (op == "bf16-dx") cpu::matmul_bf16_backward_input(dx.data(), dout.data(), wb.data(), M, K, N);
    else if (op == "bf16-argmax") {
      if (!cpu::matmul_bf16_argmax(tokens.data(), x.data(), wb.data(), *sketch, M, K, N))
        throw EngineError(ErrorCode::Internal, "bf16-argmax: the sketch path declined finite inputs");
    } else if (op == "nf4") {
      for (const Nf4Matrix& c : more_copies) cpu::matmul_nf4_forward(out.data(), x.data(), c, nullptr, M);
      cpu::matmul_nf4_forward(out.data(), x.data(), q, nullptr, M);
    } else if (op == "nf4-dx") {
      for (const Nf4Matrix& c : more_copies) cpu::matmul_nf4_backward_input(dx.data(), dout.data(), c, M);
      cpu::matmul_nf4_backward_input(dx.data(), dout.data(), q, M);
    } else throw EngineError(ErrorCode::BadInput, "unknown --op " + op);
  };
  run();  // warm-up: page faults, scratch buffers, the pool's threads
  std::vector<double> wall, cpu;
  for (int r = 0; r < reps; r++) {
    const double c0 = process_cpu_seconds();
    const auto t0 = Clock::now();
    run();
    wall.push_back(seconds_since(t0));
    cpu.push_back(process_cpu_seconds() - c0);
  }
  // A hash of the result's bits (outputs, or gradients accumulated over every run), to compare kernels that must give
  // the same bits (docs/cpu-kernels.md).
  uint64_t hash = 1469598103934665603ull;
  for (const auto* v : {&out, &dx, &dw, &aout, &dq, &dk, &dv})
    for (float f : *v) hash = (hash ^ f32_bits(f)) * 1099511628211ull;
  for (int t : tokens) hash = (hash ^ uint32_t(t)) * 1099511628211ull;
  if (op == "bf16-argmax") {  // the same tokens as the product's logits give
    cpu::matmul_bf16_forward(out.data(), x.data(), wb.data(), M, K, N);
    std::vector<int> want(static_cast<size_t>(M));
    cpu::argmax_rows(want.data(), out.data(), M, N);
    if (want != tokens) throw EngineError(ErrorCode::Internal, "bf16-argmax: tokens differ from the logits' argmax");
  }
  std::printf("%s result bits %016llx\n", op.c_str(), static_cast<unsigned long long>(hash));
  // Attention: q.k and p.v over the T(T+1)/2 causal (query, key) pairs of every head; the backward does twice that.
  const double pairs = 0.5 * M * (M + 1.0);
  const double flops = !attention ? 2.0 * M * K * N * (1.0 + double(more_copies.size()))
                                  : 4.0 * pairs * K * N * (op == "attention-dx" ? 2 : 1);
  const double wall_s = median(wall), cpu_s = median(cpu);
  std::printf("%s M=%d K=%d N=%d threads=%d: %.3f ms wall (%.1f GFLOP/s), %.3f ms cpu (%.1f GFLOP per cpu-s)\n",
              op.c_str(), M, K, N, cpu_thread_count(), wall_s * 1e3, flops / wall_s * 1e-9, cpu_s * 1e3,
              flops / cpu_s * 1e-9);
  if (a.count("json")) {
    JsonObject j;
    j.str("op", op).integer("M", M).integer("K", K).integer("N", N).integer("threads", cpu_thread_count());
    j.num("wall_s", wall_s).num("cpu_s", cpu_s).num("gflops_wall", flops / wall_s * 1e-9);
    j.num("gflops_per_cpu_s", flops / cpu_s * 1e-9);
    write_file(a.at("json"), j.text() + "\n");
  }
  return 0;
}

}  // namespace dpo::tool
