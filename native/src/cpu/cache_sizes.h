// The data caches of the machine the CPU backend runs on, for the matmuls' block sizes (docs/cpu-kernels.md#tiles).
// Only speed depends on them: every block split gives the same bits.
#pragma once
#include <cstdint>

namespace dpo::cpu {

// Bytes of one core's L2 as the OS reports it (sysconf), or 512 KiB where it reports none: the smallest L2 of the
// x86-64 machines the kernels were tuned on (Zen 3), so an unknown machine keeps the blocks sized for it.
int64_t l2_cache_bytes();

}  // namespace dpo::cpu
