// ops.h's matmuls, forwarded to one kernel set chosen once per process (docs/cpu-kernels.md "Kernel sets"): the widest
// this CPU runs among those compiled in, or the one DPO_CPU_KERNELS names (avx512, avx2, generic; tests and
// benchmarks force the narrower sets on a wider machine).
#include <cstdlib>
#include <string>

#include "dpo/errors.h"
#include "kernel_set.h"
#include "ops.h"

#if defined(DPO_CPU_KERNEL_SETS)
DPO_DECLARE_MATMUL_KERNELS(isa_avx512)
DPO_DECLARE_MATMUL_KERNELS(isa_avx2)
DPO_DECLARE_MATMUL_KERNELS(isa_generic)
#else
DPO_DECLARE_MATMUL_KERNELS(DPO_KERNEL_NS)
#endif

namespace dpo::cpu {
namespace {

struct KernelSet {
  const char* name;
  decltype(&matmul_forward) forward;
  decltype(&matmul_backward) backward;
  decltype(&matmul_bf16_forward) bf16_forward;
  decltype(&matmul_bf16_backward_input) bf16_backward_input;
  decltype(&matmul_nf4_forward_many) nf4_forward_many;
  decltype(&matmul_nf4_backward_input) nf4_backward_input;
  decltype(&matmul_nf4_prepare) nf4_prepare;
  decltype(&matmul_bf16_argmax) bf16_argmax;
  std::string (*nf4_summary)();
};

#define DPO_KERNEL_SET(label, ns)                                                                                \
  KernelSet {                                                                                                    \
    label, &ns::matmul_forward, &ns::matmul_backward, &ns::matmul_bf16_forward, &ns::matmul_bf16_backward_input, \
        &ns::matmul_nf4_forward_many, &ns::matmul_nf4_backward_input, &ns::matmul_nf4_prepare,                   \
        &ns::matmul_bf16_argmax, &ns::nf4_products_summary                                                       \
  }

#if defined(DPO_CPU_KERNEL_SETS)
const KernelSet kSets[] = {DPO_KERNEL_SET("avx512", isa_avx512), DPO_KERNEL_SET("avx2", isa_avx2),
                           DPO_KERNEL_SET("generic", isa_generic)};

bool cpu_runs(const std::string& name) {
  __builtin_cpu_init();
  if (name == "avx512")  // x86-64-v4
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && cpu_runs("avx2");
  if (name == "avx2")  // x86-64-v3
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  return name == "generic";
}

const KernelSet* choose() {
  const char* env = std::getenv("DPO_CPU_KERNELS");
  const std::string wanted = env ? env : "";
  for (const KernelSet& s : kSets) {
    if (!wanted.empty() && wanted != s.name) continue;
    if (cpu_runs(s.name)) return &s;
    if (!wanted.empty())
      fail(ErrorCode::BadInput, "DPO_CPU_KERNELS=" + wanted + ": this CPU cannot run the " + wanted + " kernels");
  }
  fail(ErrorCode::BadInput, "DPO_CPU_KERNELS=" + wanted + " is not one of avx512, avx2, generic");
}
#else
const KernelSet kSets[] = {DPO_KERNEL_SET("native", DPO_KERNEL_NS)};  // one set, built for this machine
bool cpu_runs(const std::string& name) { return name == "native"; }
const KernelSet* choose() { return &kSets[0]; }
#endif

const KernelSet* g_set = nullptr;

const KernelSet& kernels() {
  static const KernelSet* chosen = choose();
  return g_set ? *g_set : *chosen;
}

}  // namespace

const char* matmul_kernel_set() { return kernels().name; }

std::string cpu_kernels_summary() {
  return std::string(kernels().name) + ", 4-bit products by " + kernels().nf4_summary();
}

bool use_matmul_kernel_set(const char* name) {
  for (const KernelSet& s : kSets)
    if (std::string(name) == s.name && cpu_runs(name)) return g_set = &s, true;
  return false;
}

void matmul_forward(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) {
  kernels().forward(out, x, w, bias, M, K, N);
}
void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int M,
                     int K, int N) {
  kernels().backward(dx, dw, dbias, dout, x, w, M, K, N);
}
void matmul_bf16_forward(float* out, const float* x, const uint16_t* w, int M, int K, int N) {
  kernels().bf16_forward(out, x, w, M, K, N);
}
void matmul_bf16_backward_input(float* dx, const float* dout, const uint16_t* w, int M, int K, int N) {
  kernels().bf16_backward_input(dx, dout, w, M, K, N);
}
void matmul_nf4_forward(float* out, const float* x, const Nf4Matrix& w, const float* bias, int M) {
  const Nf4Product one{out, &w, bias};
  kernels().nf4_forward_many(&one, 1, x, M);
}
void matmul_nf4_forward_many(const Nf4Product* products, int count, const float* x, int M) {
  kernels().nf4_forward_many(products, count, x, M);
}
void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M, bool overwrite) {
  kernels().nf4_backward_input(dx, dout, w, M, overwrite);
}
void matmul_nf4_prepare(const Nf4Matrix& w) { kernels().nf4_prepare(w); }
bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& s, int M, int K, int N) {
  return kernels().bf16_argmax(out, x, w, s, M, K, N);
}

}  // namespace dpo::cpu
