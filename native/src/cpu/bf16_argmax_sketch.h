// An int8 sketch of a bf16 weight matrix for greedy decoding (docs/cpu-kernels.md#greedy-tokens-from-an-int8-sketch):
// each row's weights as int8 with one fp32 scale, and a per-row slack that bounds how far a dot product through the
// sketch can be from the exact fp32 one. The greedy step reads the sketch (1 byte per weight instead of 2) and rescores
// only the rows that the bounds cannot rule out. Built once, outside the kernel sets: the bound holds for any
// summation order, fused or not.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace dpo {

struct Bf16ArgmaxSketch {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;  // (rows, cols): round(w / scale), within -127 .. 127
  std::vector<float> scale;  // (rows)
  std::vector<double> slack;  // (rows): |fp32 dot(x, w_r) - fp32 dot(x, q_r) * scale_r| <= |x|_2 * slack_r + kAbsSlack
  // What gradual underflow can add to that, whatever x: one subnormal spacing per rounding, with room to spare.
  static constexpr double kAbsSlack = 1e-35;
};

// The sketch of w (rows N, K columns, bf16 bits), or null when a weight is inf or NaN (no bound holds there).
std::unique_ptr<Bf16ArgmaxSketch> sketch_bf16_rows(const uint16_t* w, int64_t K, int64_t N);

}  // namespace dpo
