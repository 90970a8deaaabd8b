// Launchers of the RoPE kernels (rope.cu), as cpu::rope_forward / rope_backward.
// Launcher conventions: cuda_common.cuh. Host-only declarations (the tests include this header as plain C++).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dpo/backend.h"

namespace dpo::cuda {

// In-place rotate-half RoPE on x (M, H*HD), row m at position pos[m] (M); HD even, HD <= 512; the table's
// inv_freq has HD/2 entries (model/rope_table.h).
void launch_rope_forward(cudaStream_t stream, float* x, const int* pos, int M, int H, int HD, const RopeTable& table);
void launch_rope_backward(cudaStream_t stream, float* dx, const int* pos, int M, int H, int HD, const RopeTable& table);

}  // namespace dpo::cuda
