// The run-time switches of the NF4 GEMV's fast paths (docs/cpu-kernels.md#the-bf16-dot-gemv,
// #the-fp16-table-by-float-adds): compiled once, outside the kernel sets, so tests and benchmarks can compare them
// with the plain FMA path in one process.
#pragma once
#include <cstdint>

namespace dpo::cpu {

// Whether the bf16-dot path may run: DPO_CPU_BF16_DOT=0 in the environment turns it off; set_nf4_bf16_dot_allowed
// overrides the environment. Even when allowed it runs only on a CPU with AVX512-BF16 and VBMI whose start-up probe
// matched the FMA path, and only for inputs inside its exact range.
bool nf4_bf16_dot_allowed();
void set_nf4_bf16_dot_allowed(bool allowed);

// Whether the FMA path may build fp16-storage tables with float adds (nf4_lanes.h, block_lut_bf16_fp16_normal) and
// take one-row calls from the bf16-dot path: DPO_CPU_FP16_TABLE=0 turns it off; set_nf4_fp16_table_allowed overrides.
bool nf4_fp16_table_allowed();
void set_nf4_fp16_table_allowed(bool allowed);

// Whether the bf16-dot kernels are the faster choice on this core (docs/cpu-kernels.md#bf16-dot-tiles): -1 measure
// it (bf16_dot_rate.cpp), 0 no, 1 yes. From DPO_CPU_BF16_DOT_PREFER (0 or 1; unset or anything else: measure);
// set_nf4_bf16_dot_preference overrides the environment. It decides between two exact paths, so only speed changes.
int nf4_bf16_dot_preference();
void set_nf4_bf16_dot_preference(int preference);

// How many matmul calls the bf16-dot path has served (the tests check that it really ran).
uint64_t nf4_bf16_dot_calls();
void count_nf4_bf16_dot_call();
// The same for the tiled forward's bf16-dot tiles (matmul calls, one per matrix).
uint64_t nf4_bf16_dot_tile_calls();
void count_nf4_bf16_dot_tile_call();

}  // namespace dpo::cpu
