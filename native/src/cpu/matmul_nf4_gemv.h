// The few-rows NF4 matmul (matmul_nf4_gemv.cpp), which matmul_nf4_forward hands decode-sized batches to.
#pragma once
#include "../quant/nf4.h"
#include "vec.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

// Largest M the register path takes; above it the tiled path decodes rows once into a buffer and reuses them.
constexpr int kGemvMaxRows = 8;

// out (M,N) = xb (M,K) . bf16(dequant(W))^T (+ bias), xb already bf16-rounded with row stride K. Returns false
// (and does nothing) when the shape is not for it: M > kGemvMaxRows, or K not a multiple of the 64-element block.
// The bf16-dot path (nf4_gemv_bf16dot.cpp) when it may run and the inputs are in its exact range, else the FMA path.
bool matmul_nf4_gemv(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M);

// The two paths, same shapes and same bits (docs/cpu-kernels.md#the-bf16-dot-gemv). The bf16-dot one returns false
// (and does nothing) on a CPU without AVX512-BF16 / VBMI, when its probe failed or DPO_CPU_BF16_DOT=0 turned it off,
// or when w or xb is outside its range.
void matmul_nf4_gemv_fma(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M);
bool matmul_nf4_gemv_bf16dot(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M);
// Whether this CPU runs the bf16-dot path and its start-up probe matched the FMA path (computed once).
bool nf4_bf16_dot_usable();

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
