// `dpo-tool ceilings`: the two numbers the CPU floors in BENCHMARKS.md are computed from, measured on this machine:
// memory read bandwidth (every thread streams its share of a buffer much larger than the last-level cache) and the
// fp32 FMA rate (every thread runs independent FMA chains on the widest vectors the build uses). Each figure is the
// best of --reps tries, for 1 thread and for all threads; the load average beside them says how shared the machine
// was, and the FMA rate per CPU-second of a thread is what a core gives when it is not shared. A multiply-add counts
// as 2 FLOPs. DPO_CPU_KERNELS=avx2 on an AVX-512 build measures 8-lane FMAs instead: the rate of the kernel set it
// makes the engine use (`npm run bench:peers -- --kernels avx2`), so that floors computed from it are that set's.
//   dpo-tool ceilings [--mib 1024] [--reps 5] [--json FILE]
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "cpu/thread_pool.h"
#include "cpu/vec.h"

namespace dpo::tool {
namespace {

using cpu::f32x16;

// Sums n floats with 4 independent lane groups: the loads, not the adds, set the pace.
float stream_sum(const float* p, int64_t n) {
  f32x16 a0{}, a1{}, a2{}, a3{};
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    a0 += cpu::load16(p + i);
    a1 += cpu::load16(p + i + 16);
    a2 += cpu::load16(p + i + 32);
    a3 += cpu::load16(p + i + 48);
  }
  return cpu::reduce16(a0 + a1 + a2 + a3);
}

// Twelve independent FMA chains of native vectors V (a GCC vector of 16, 8 or 4 floats), `iters` times: 24 FLOPs per
// lane and iteration. Twelve vectors in flight: enough to cover the FMA latency on both pipes of the cores seen here,
// and few enough that none spills from the 16 or 32 vector registers. Every lane starts from its own value: with
// equal 8-lane halves GCC computed one half and copied it, and the AVX2 rate read twice the real one.
constexpr int kFmaChains = 12;
template <class V>
float fma_chains(int64_t iters, float seed) {
  constexpr int kVecLanes = int(sizeof(V) / sizeof(float));
  V a[kFmaChains], m, c;
  for (int l = 0; l < kVecLanes; l++) {
    m[l] = 0.999999f, c[l] = 1e-7f;
    for (int i = 0; i < kFmaChains; i++) a[i][l] = seed + 0.1f * float(i) + 0.001f * float(l);
  }
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < kFmaChains; i++) a[i] = a[i] * m + c;
  }
  V sum = a[0];
  for (int i = 1; i < kFmaChains; i++) sum = sum + a[i];
  float total = 0.0f;
  for (int l = 0; l < kVecLanes; l++) total += sum[l];
  return total;
}

// The FMA loop of the kernel set the engine runs: FLOPs per iteration of `run`. The build's widest vectors, unless
// DPO_CPU_KERNELS asks an AVX-512 build for the AVX2 set (the generic set has no FMA: it is not measured apart).
struct FmaLoop {
  float (*run)(int64_t, float);
  double flops_per_iter;
  const char* name;
};
template <class V>
FmaLoop fma_loop_of(const char* name) {
  return {fma_chains<V>, 2.0 * double(sizeof(V) / sizeof(float)) * kFmaChains, name};
}
FmaLoop fma_loop() {
  const char* widest = "the build's widest vectors";
#if defined(__AVX512F__)
  typedef float F32x8 __attribute__((vector_size(32)));
  const char* env = std::getenv("DPO_CPU_KERNELS");
  if (env && std::string(env) == "avx2") return fma_loop_of<F32x8>("avx2 (8 lanes)");
  return fma_loop_of<f32x16>(widest);
#else
  return fma_loop_of<cpu::f32part>(widest);
#endif
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Timing {
  double wall = 0;  // seconds until the last thread finished
  double cpu = 0;   // the largest CPU time of one thread
};

// Runs fn(thread index) on `threads` fresh threads at once.
template <class Fn>
Timing timed_on_threads(int threads, Fn fn) {
  std::atomic<int> ready{0};
  std::vector<double> cpu(static_cast<size_t>(threads));
  std::vector<std::thread> ts;
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&, t] {
      ready++;
      while (ready.load() < threads) std::this_thread::yield();
      const double c0 = thread_cpu_seconds();
      fn(t);
      cpu[size_t(t)] = thread_cpu_seconds() - c0;
    });
  for (auto& t : ts) t.join();
  return {seconds_since(t0), *std::max_element(cpu.begin(), cpu.end())};
}

double load_average() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

}  // namespace

int cmd_ceilings(const Args& a) {
  const int64_t mib = get_int(a, "mib", "1024"), reps = get_int(a, "reps", "5");
  const int all = std::max(1, cpu_thread_count());
  const int64_t n = mib * (int64_t(1) << 20) / int64_t(sizeof(float));
  std::vector<float> buf(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) buf[size_t(i)] = float(i & 1023) * 1e-3f;  // touched: pages exist
  volatile float sink = 0;
  const double load_before = load_average();

  JsonObject j;
  const FmaLoop fma = fma_loop();
  std::printf(
      "| threads | read bandwidth GB/s | fp32 FMA GFLOP/s | per CPU-second of each thread |\n|---|---|---|---|\n");
  for (int threads : {1, all}) {
    double best_bw = 0, best_fl = 0, best_fl_cpu = 0;
    for (int r = 0; r < reps; r++) {
      std::vector<float> sums(static_cast<size_t>(threads));
      const double s = timed_on_threads(threads, [&](int t) {
                         const int64_t b = n * t / threads / 64 * 64, e = n * (t + 1) / threads / 64 * 64;
                         sums[size_t(t)] = stream_sum(buf.data() + b, e - b);
                       }).wall;
      for (float v : sums) sink = sink + v;
      best_bw = std::max(best_bw, double(n) * sizeof(float) / s * 1e-9);
      const int64_t iters = 20'000'000;
      const Timing f = timed_on_threads(threads, [&](int t) { sink = sink + fma.run(iters, float(t)); });
      best_fl = std::max(best_fl, fma.flops_per_iter * double(iters) * threads / f.wall * 1e-9);
      best_fl_cpu = std::max(best_fl_cpu, fma.flops_per_iter * double(iters) / f.cpu * 1e-9);
    }
    std::printf("| %d | %.1f | %.1f | %.1f |\n", threads, best_bw, best_fl, best_fl_cpu);
    const std::string k = threads == 1 ? "1_thread" : "all_threads";
    j.num("read_GBps_" + k, best_bw).num("fma_GFLOPs_" + k, best_fl).num("fma_GFLOPs_per_cpu_s_" + k, best_fl_cpu);
    if (all == 1) break;
  }
  const double load_after = load_average();
  std::printf("threads: %d, buffer %lld MiB, FMA on %s, load average %.2f before, %.2f after\n", all, (long long)mib,
              fma.name, load_before, load_after);
  j.str("fma_vectors", fma.name);
  j.integer("threads", all).integer("buffer_mib", mib).num("load_before", load_before).num("load_after", load_after);
  if (a.count("json")) write_file(a.at("json"), j.text() + "\n");
  return 0;
}

}  // namespace dpo::tool
