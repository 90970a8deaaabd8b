// The tiled NF4 matmuls' bf16-dot tiles (nf4_tiles_bf16dot.cpp, docs/cpu-kernels.md#bf16-dot-tiles): the pieces
// matmul_nf4_forward_many and matmul_nf4_backward_input run instead of their fp32 tiles where they are exact and the
// faster choice.
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

// The input gradient's coefficients: bf16(dout) (M rows of N bf16-valued floats, N even, row stride ldb) as pair
// dwords (element 2p in the high word, 2p + 1 in the low), rows of ldo dwords. False, with nothing written, when
// some value is outside the exact range.
bool nf4_bf16_dot_pack_pairs(uint32_t* out, int64_t ldo, const float* db, int64_t ldb, int64_t M, int64_t N);

// Decoded weight rows (2 * pairs rows of L bf16-valued floats, L a multiple of 16, ldr apart) as pair dwords: pair p,
// column l is (row 2p high, row 2p + 1 low); rows of ldo dwords.
void nf4_pair_rows(uint32_t* out, int64_t ldo, const float* rows, int64_t ldr, int64_t pairs, int64_t L);

// axpy_rows over pairs: acc (I rows, lda) += coef pairs (I x J pairs, row stride csi) . b pairs (J pair rows, ldb)
// over L columns (a multiple of 16): the fp32 axpy tiles' sequential sums, bit for bit; `ends` as in axpy_rows.
void nf4_bf16_dot_axpy_rows(float* acc, int64_t lda, const uint32_t* coef, int64_t csi, const uint32_t* b, int64_t ldb,
                            int64_t I, int64_t J, int64_t L, const AxpyEnds& ends);

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
