// The run-time switch of the bf16-dot NF4 GEMV (docs/cpu-kernels.md#the-bf16-dot-gemv): compiled once, outside the
// kernel sets, so tests and benchmarks can compare it with the FMA path in one process.
#pragma once
#include <cstdint>

namespace dpo::cpu {

// Whether the bf16-dot path may run: DPO_CPU_BF16_DOT=0 in the environment turns it off; set_nf4_bf16_dot_allowed
// overrides the environment. Even when allowed it runs only on a CPU with AVX512-BF16 and VBMI whose start-up probe
// matched the FMA path, and only for inputs inside its exact range.
bool nf4_bf16_dot_allowed();
void set_nf4_bf16_dot_allowed(bool allowed);

// How many matmul calls the bf16-dot path has served (the tests check that it really ran).
uint64_t nf4_bf16_dot_calls();
void count_nf4_bf16_dot_call();

}  // namespace dpo::cpu
