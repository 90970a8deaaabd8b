// The scale ranges of the CPU's NF4 GEMV fast paths. The bf16-dot one (docs/cpu-kernels.md#the-bf16-dot-gemv): every
// decoded weight is 0 or a normal bf16 value no smaller than 2^-50 and no larger than 2^15, which with the same bounds
// on x keeps every product and partial sum of a dot clear of subnormals and overflow. The fp16 table's
// (#the-fp16-table-by-float-adds): every nonzero table entry is a normal fp16 value.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "nf4.h"

namespace dpo {

bool zero_or_magnitude_within(const float* v, int64_t n, float lo, float hi) {
  // On bit patterns, one unsigned test per element that GCC vectorises: the calls check every x and output gradient
  // of the bf16-dot kernels, and the float form (a branch per element) took 2.7% of a training step. Without the
  // sign bit, patterns order like magnitudes (lo and hi are positive and finite), every NaN's lies above inf's and
  // hi's, and a pattern below lo's wraps around to a large difference.
  uint32_t lo_bits, hi_bits;
  std::memcpy(&lo_bits, &lo, sizeof lo_bits);
  std::memcpy(&hi_bits, &hi, sizeof hi_bits);
  const uint32_t span = hi_bits - lo_bits;
  uint32_t outside = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, v + i, sizeof u);
    u &= 0x7fffffffu;
    outside |= uint32_t(u != 0) & uint32_t(u - lo_bits > span);
  }
  return outside == 0;
}

bool nf4_scales_in_bf16_dot_range(const float* absmax, int64_t blocks) {
  // 2^-46 * 0.0796 (the smallest nonzero |NF4 code|) > 2^-50; 2^15 * 1.0 stays below fp16's largest finite value, so
  // no storage dtype rounds a weight to inf.
  return zero_or_magnitude_within(absmax, blocks, std::ldexp(1.0f, -46), std::ldexp(1.0f, 15));
}

bool nf4_scales_fp16_table_normal(const float* absmax, int64_t blocks) {
  // 2^-10 * 0.0796 (the smallest nonzero |NF4 code|, rounded down) > 2^-14, fp16's smallest normal; 2^15 * 1.0 is
  // below fp16's largest finite value. A positive absmax also keeps the table's zero entry +0.
  const float lo = std::ldexp(1.0f, -10), hi = std::ldexp(1.0f, 15);
  bool ok = true;  // the comparisons are false for NaN
  for (int64_t i = 0; i < blocks; i++) ok &= absmax[i] >= lo && absmax[i] <= hi;
  return ok;
}

}  // namespace dpo
