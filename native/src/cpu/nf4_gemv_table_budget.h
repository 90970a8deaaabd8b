// The memory budget of the AVX2 decode GEMV's cached byte tables (docs/cpu-kernels.md#cached-byte-tables-on-avx2):
// 32 bytes per 64-weight block (half a byte per weight on top of the NF4 matrix's 0.52), so a matrix gets them only
// while the process's tables stay within the budget. Compiled once, outside the kernel sets.
#pragma once
#include <cstdint>

namespace dpo::cpu {

// The budget in bytes: DPO_CPU_GEMV_TABLES_MB in the environment (0 turns the tables off), else 1024 MiB;
// set_nf4_gemv_table_budget overrides both (tests).
int64_t nf4_gemv_table_budget();
void set_nf4_gemv_table_budget(int64_t bytes);

// Takes `bytes` of the budget if they fit (true) or nothing (false); release gives them back.
bool reserve_nf4_gemv_tables(int64_t bytes);
void release_nf4_gemv_tables(int64_t bytes);
// Bytes of tables alive in the process.
int64_t nf4_gemv_tables_in_use();

}  // namespace dpo::cpu
