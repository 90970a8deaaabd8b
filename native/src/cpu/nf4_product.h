// One product of matmul_nf4_forward_many (ops.h): out (M,N) = bf16(x) . bf16(dequant(W))^T + bias, where the x of
// the call is shared by every product (the q, k and v projections of one normalised input; gate and up).
#pragma once
#include "../quant/nf4.h"

namespace dpo::cpu {

struct Nf4Product {
  float* out;
  const Nf4Matrix* w;
  const float* bias;  // (N) or null
};

}  // namespace dpo::cpu
