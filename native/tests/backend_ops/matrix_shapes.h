// The shapes the matrix-op cases share (matmul.cpp, matmul_nf4.cpp): the parity grid of M, K, N (odd K for
// unaligned rows and NF4 blocks crossing rows; M = 70 for the batch-invariance checks) and row helpers.
#pragma once
#include <string>
#include <vector>

#include "op_checks.h"

namespace dpo_test::ops {

inline constexpr int kGridMs[] = {1, 3, 17, 70};
inline constexpr int kGridKs[] = {64, 172, 256, 37};
inline constexpr int kGridNs[] = {8, 61, 512};

// Rows row0 .. row0+rows-1 of a (.., cols) matrix.
inline std::vector<float> rows_of(const std::vector<float>& v, int row0, int rows, int cols) {
  return slice(v, size_t(row0) * cols, size_t(rows) * cols);
}

inline std::string dims(int M, int K, int N) {
  return "M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N);
}

}  // namespace dpo_test::ops
