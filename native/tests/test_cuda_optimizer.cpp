// The CUDA backend's optimizer ops (optimizer_ops.cu) against the CPU backend's (the reference functions of
// train/adamw.cpp, adamw_8bit.cpp), through the Backend interface and the device-state optimizer classes:
//  - l2_norm within 1e-6 relative: both sum exact double squares, in different fixed orders, then round to fp32
//    (in practice the same bits; the test prints how many sizes matched exactly). NaN / inf propagate.
//  - fp32 AdamW and bnb's 32-bit / 8-bit blockwise AdamW over several steps (varying lr, weight decay, non-finite
//    gradients, an all-zero block, partial tail blocks): params, state, codes and block scales bit for bit. The
//    per-element arithmetic is the same source on both sides (train/adam_math.h) with every op rounded alone, and the
//    scalars come from the host, so nothing but NaN payloads may differ (x86 and the GPU make different NaN bits;
//    the comparison takes any NaN as equal to any NaN).
// Without a GPU every GPU case prints "skipped: no GPU (<reason>)" and passes; the launchers' argument checks and
// launch-error path still run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <type_traits>
#include <vector>

#include "adam_test_data.h"
#include "check.h"
#include "gpu_backend.h"
#include "random_data.h"
#include "core/device_array.h"
#include "dpo/backend.h"
#include "dpo/errors.h"
#include "train/device_adamw.h"
#include "train/optimizer.h"

#ifdef DPO_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_probe.h"
#include "cuda/ops_misc.cuh"
#endif

using namespace dpo;
using std::vector;

#ifdef DPO_WITH_CUDA

namespace {

using dpo_test::randu;

using dpo_test::gpu_or_skip;

Backend& cpu_backend() {
  static std::unique_ptr<Backend> be = make_cpu_backend();
  return *be;
}

// Equal bits, or both NaN (NaN payloads are platform-specific).
template <class T>
bool same(T a, T b) {
  if constexpr (std::is_floating_point_v<T>)
    if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <class T>
void check_same(const char* what, const vector<T>& got, const vector<T>& want) {
  CHECK(got.size() == want.size());
  int bad = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); i++) {
    if (same(got[i], want[i])) continue;
    if (bad++ < 4) std::printf("  %s[%zu] = %.9g, want %.9g\n", what, i, double(got[i]), double(want[i]));
  }
  if (bad) {
    std::printf("  %s: %d of %zu values differ\n", what, bad, want.size());
    dpo_test::failures()++;
  }
}

using dpo_test::grads_for;
using dpo_test::hyper;

// One optimizer with its parameter and gradient buffers on one backend.
struct Side {
  Backend& be;
  std::unique_ptr<DeviceOptimizer> opt;
  DeviceArray<float> p, g;
  Side(Backend& b, bool eight_bit, const vector<float>& p0)
      : be(b),
        opt(eight_bit ? make_device_adamw_8bit(b, int64_t(p0.size())) : make_device_adamw(b, int64_t(p0.size()))),
        p(DeviceArray<float>::from_host(b, p0)),
        g(b, p0.size()) {}
  void step(const vector<float>& grad, const AdamHyper& h) {
    g.upload(grad);
    opt->update(p.get(), g.get(), h);
  }
};

// Steps the same optimizer on the CPU and the GPU backend and compares params and state after every step.
void run_parity(Backend& gpu_be, bool eight_bit, size_t n, double wd) {
  std::printf("  %s n=%zu wd=%g\n", eight_bit ? "8-bit" : "fp32", n, wd);
  const vector<float> p0 = randu(n, -1.0f, 1.0f, 11u + uint32_t(n));
  Side cpu(cpu_backend(), eight_bit, p0), dev(gpu_be, eight_bit, p0);
  const double lrs[5] = {0.0, 1e-2, 3e-3, 2e-2, 5e-3};
  for (int s = 0; s < 5; s++) {
    vector<float> g = grads_for(n, s == 3 ? 1e-3f : 1.0f, 700u + uint32_t(s));
    if (s == 2) {  // non-finite gradients, and an all-zero state block where there is a second block
      g[n / 3] = std::numeric_limits<float>::quiet_NaN();
      g[n - 1] = std::numeric_limits<float>::infinity();
      if (n > 4096)
        for (size_t i = 2048; i < 4096; i++) g[i] = 0.0f;
    }
    cpu.step(g, hyper(lrs[s], wd));
    dev.step(g, hyper(lrs[s], wd));
    check_same("param", dev.p.to_host(), cpu.p.to_host());
    if (auto* a = dynamic_cast<DeviceAdamW*>(cpu.opt.get())) {
      auto* b = dynamic_cast<DeviceAdamW*>(dev.opt.get());
      check_same("exp_avg", b->m(), a->m());
      check_same("exp_avg_sq", b->v(), a->v());
    } else {
      auto* a8 = dynamic_cast<DeviceAdamW8bit*>(cpu.opt.get());
      auto* b8 = dynamic_cast<DeviceAdamW8bit*>(dev.opt.get());
      if (a8->blockwise()) {
        check_same("state1", b8->state1(), a8->state1());
        check_same("state2", b8->state2(), a8->state2());
        check_same("absmax1", b8->absmax1(), a8->absmax1());
        check_same("absmax2", b8->absmax2(), a8->absmax2());
      } else {
        check_same("m32", b8->m32(), a8->m32());
        check_same("v32", b8->v32(), a8->v32());
      }
    }
  }
  CHECK(dev.opt->step() == 5);
}

}  // namespace

TEST_CASE(cuda_l2_norm_matches_cpu) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  int exact = 0, total = 0;
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(1000), int64_t(2049), int64_t(3 * 65536 + 5),
                          int64_t(1 << 22) + 3, int64_t(27'000'001)}) {
    vector<float> x = randu(size_t(n), -1.0f, 1.0f, 21u + uint32_t(n));
    if (n > 5) x[size_t(n / 2)] = 1e-30f, x[size_t(n / 3)] = 1e20f;  // a wide range of magnitudes
    const float want = cpu::l2_norm(x.data(), n);
    DeviceArray<float> dx = DeviceArray<float>::from_host(*g, x), out(*g, 2);
    g->l2_norm(out.get(), dx.get(), n);
    g->l2_norm(out.get() + 1, dx.get(), n);  // the same bits again
    const vector<float> got = out.to_host();
    std::printf("  n=%lld: %.9g, cpu %.9g\n", static_cast<long long>(n), double(got[0]), double(want));
    CHECK_CLOSE(got[0], want, 0.0, 1e-6);
    CHECK(same(got[0], got[1]));
    exact += same(got[0], want), total++;
  }
  std::printf("  %d of %d norms bit-identical to the CPU's\n", exact, total);
  // Non-finite gradients give a non-finite norm, as on the CPU (and in torch).
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    vector<float> x = randu(5000, -1.0f, 1.0f, 3u);
    x[1234] = bad;
    DeviceArray<float> dx = DeviceArray<float>::from_host(*g, x), out(*g, 1);
    g->l2_norm(out.get(), dx.get(), int64_t(x.size()));
    const float got = out.to_host()[0];
    CHECK(same(got, cpu::l2_norm(x.data(), int64_t(x.size()))));
    CHECK(std::isnan(bad) ? std::isnan(got) : std::isinf(got));
  }
}

TEST_CASE(cuda_adamw_steps_bitwise) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  for (const size_t n : {size_t(1), size_t(1000), size_t(300001)})
    for (const double wd : {0.0, 0.1}) run_parity(*g, false, n, wd);
}

TEST_CASE(cuda_adamw_8bit_steps_bitwise) {
  Backend* g = gpu_or_skip();
  if (!g) return;
  // 1000: bnb's 32-bit path; 4096: the smallest blockwise tensor; 2048*3+17: a partial tail block (padded lanes);
  // 262144: a Breeze LoRA A (r64 x 4096), 128 blocks.
  for (const size_t n : {size_t(1000), size_t(4096), size_t(2048 * 3 + 17), size_t(262144)})
    for (const double wd : {0.0, 0.01}) run_parity(*g, true, n, wd);
}

// Launcher argument checks and the launch-error path (these run without a GPU too).
TEST_CASE(cuda_optimizer_launchers) {
  using namespace dpo::cuda;
  const AdamWStepScalars s{};
  const BnbAdamStepScalars b{};
  CHECK_THROWS_CODE(launch_l2_norm(nullptr, nullptr, nullptr, -1, nullptr), ErrorCode::BadInput, "bad size");
  CHECK_THROWS_CODE(launch_adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, s, -1), ErrorCode::BadInput,
                    "bad size");
  CHECK_THROWS_CODE(launch_adamw_bnb32_step(nullptr, nullptr, nullptr, nullptr, nullptr, b, -1), ErrorCode::BadInput,
                    "bad size");
  CHECK_THROWS_CODE(launch_adamw_bnb8bit_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              b, -1),
                    ErrorCode::BadInput, "bad size");
  // Empty tensors launch nothing.
  launch_adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, s, 0);
  launch_adamw_bnb32_step(nullptr, nullptr, nullptr, nullptr, nullptr, b, 0);
  launch_adamw_bnb8bit_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, b, 0);
  // Without a GPU a launch fails, and the launcher reports it as E_INTERNAL naming the op and the CUDA error.
  if (!cuda::probe().available) {
    CHECK_THROWS_CODE(launch_adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, s, 10), ErrorCode::Internal,
                      "adamw_step: cuda");
    CHECK_THROWS_CODE(launch_adamw_bnb8bit_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                nullptr, b, 5000),
                      ErrorCode::Internal, "adamw_bnb8bit_step: cuda");
    cudaGetLastError();
  }
}
#else
TEST_CASE(cuda_optimizer_ops) { std::printf("  skipped: no GPU (the engine was built without CUDA)\n"); }
#endif

TEST_MAIN()
