// Launchers of the optimizer kernels (optimizer.cu), as the functions train/optimizer.h declares.
// Launcher conventions: cuda_common.cuh. Host-only declarations (the tests include this header as plain C++).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dpo/backend.h"

namespace dpo::cuda {

// The optimizer step (Backend::l2_norm .. adamw_bnb8bit_step), per-element arithmetic of
// train/adam_math.h compiled for the device, so every output equals the CPU backend's bit for bit; only l2_norm sums
// its (exact) double squares in another fixed order than the CPU, ~1e-16 relative before the rounding to fp32.
constexpr int kL2NormPartials = 1024;  // doubles of scratch launch_l2_norm needs
// out (1) = fp32 sqrt of the sum of x (n) squared, in double: up to kL2NormPartials fixed-order block partial sums
// (written to `partials`, device scratch), then one block adds them in order. n == 0 writes 0.
void launch_l2_norm(cudaStream_t stream, float* out, const float* x, int64_t n, double* partials);
// torch AdamW: param, exp_avg, exp_avg_sq (n) updated in place from grad (n).
void launch_adamw_step(cudaStream_t stream, float* param, float* exp_avg, float* exp_avg_sq, const float* grad,
                       const AdamWStepScalars& s, int64_t n);
// bnb's 32-bit AdamW kernel on fp32 state m, v (n).
void launch_adamw_bnb32_step(cudaStream_t stream, float* param, float* m, float* v, const float* grad,
                             const BnbAdamStepScalars& s, int64_t n);
// bnb's 8-bit blockwise AdamW: codes state1, state2 (n), block scales absmax1, absmax2 (ceil(n/2048)); qmaps (2,256)
// holds the signed then the unsigned dynamic map on the device.
void launch_adamw_bnb8bit_step(cudaStream_t stream, float* param, uint8_t* state1, uint8_t* state2, float* absmax1,
                               float* absmax2, const float* grad, const float* qmaps, const BnbAdamStepScalars& s,
                               int64_t n);

}  // namespace dpo::cuda
