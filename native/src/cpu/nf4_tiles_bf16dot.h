// The tiled NF4 forward's bf16-dot tiles (nf4_tiles_bf16dot.cpp, docs/cpu-kernels.md#bf16-dot-tiles): the pieces
// matmul_nf4_forward_many runs instead of its fp32 decode and dot tiles where they are exact and the faster choice.
// Every kernel set declares them; only the AVX-512 set has them (the others never take the path).
#pragma once
#include <cstdint>

#include "../quant/nf4.h"
#include "tile_kernels.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

// Whether w's tiled forward takes the bf16-dot tiles (for an x in range): K a multiple of the 64-element block,
// every scale inside the exact range (Nf4Matrix::bf16_dot_exact), and nf4_bf16_dot_preferred().
bool nf4_bf16_dot_tiles_for(const Nf4Matrix& w);

// x (M rows of K bf16-valued floats, row stride ldx; K a multiple of 64) as the kernels' words, rows of ldxw words.
// False, with nothing written, when some x is outside the exact range (then the fp32 tiles run).
bool nf4_bf16_dot_pack_x(uint16_t* xw, int64_t ldxw, const float* xb, int64_t ldx, int64_t M, int64_t K);

// Columns [k0, k1) (multiples of 64) of W's rows n0..n1 as words, rows of ldw words: decode_row_columns's values.
void nf4_decode_row_words(uint16_t* out, int64_t ldw, const Nf4Matrix& w, const float* absmax, int64_t n0, int64_t n1,
                          int64_t k0, int64_t k1);

// out (rows x cols, ldo) = x words (rows, ldxw) . w words (cols, ldw)^T (+ bias) over K (a multiple of 64) words:
// dot_rows's lane sums, bit for bit, two products per instruction; `ls` as in dot_rows.
void nf4_bf16_dot_rows(float* out, int64_t ldo, const uint16_t* xw, int64_t ldxw, const uint16_t* ww, int64_t ldw,
                       const float* bias, int64_t rows, int64_t cols, int64_t K, const LaneSums& ls);

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
