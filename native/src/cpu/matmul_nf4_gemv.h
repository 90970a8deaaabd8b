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
bool matmul_nf4_gemv(float* out, const float* xb, const Nf4Matrix& w, const float* bias, int M);

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
