// fp32 operations rounded one at a time, identically on the host and in CUDA device code, for arithmetic written once
// and compiled for both (train/adam_math.h). The host build may contract a*b + c into an FMA (-march=native) and nvcc
// does by default; here a product is always rounded on its own (fp_strict.h's rn on the host, __fmul_rn on the
// device, which nvcc never contracts), and the one deliberate fused op is ffma. Division and sqrt are the IEEE ones on
// both sides (correctly rounded), so a chain of these calls gives the same bits on the CPU and the GPU.
#pragma once
#include <cmath>

#include "core/fp_strict.h"

#ifdef __CUDACC__
#define DPO_HD __host__ __device__ __forceinline__
#else
#define DPO_HD inline
#endif

namespace dpo::fp {

#ifdef __CUDA_ARCH__
DPO_HD float add(float a, float b) { return __fadd_rn(a, b); }
DPO_HD float sub(float a, float b) { return __fsub_rn(a, b); }
DPO_HD float mul(float a, float b) { return __fmul_rn(a, b); }
DPO_HD float div(float a, float b) { return __fdiv_rn(a, b); }
DPO_HD float sqrt(float a) { return __fsqrt_rn(a); }
DPO_HD float fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
DPO_HD float abs(float a) { return fabsf(a); }
DPO_HD float max(float a, float b) { return fmaxf(a, b); }  // IEEE maxNum: a NaN operand loses, as std::fmax
DPO_HD bool finite(float a) { return isfinite(a); }
DPO_HD bool sign(float a) { return signbit(a); }
#else
// Sums, differences and quotients cannot be contracted with anything once every product is rounded by mul().
DPO_HD float add(float a, float b) { return a + b; }
DPO_HD float sub(float a, float b) { return a - b; }
DPO_HD float mul(float a, float b) { return rn(a * b); }
DPO_HD float div(float a, float b) { return a / b; }
DPO_HD float sqrt(float a) { return std::sqrt(a); }
DPO_HD float fma(float a, float b, float c) { return std::fma(a, b, c); }
DPO_HD float abs(float a) { return std::fabs(a); }
DPO_HD float max(float a, float b) { return std::fmax(a, b); }
DPO_HD bool finite(float a) { return std::isfinite(a); }
DPO_HD bool sign(float a) { return std::signbit(a); }
#endif

}  // namespace dpo::fp
