// One whole NF4 block (64 values) quantized: its absmax and its 32 packed bytes, as docs/reference/nf4.md's
// kQuantizeBlockwise gives them. The loader runs it once per 64 weights (113M times for a 7B model), so there are
// two forms with the same results, AVX2 where the CPU runs it and portable code elsewhere
// (docs/performance.md#loading-a-checkpoint).
#pragma once
#include <cstdint>

namespace dpo {

enum class Nf4BlockIsa { Portable, Avx2 };

// absmax of w[0..63] (a NaN never wins; -FLT_MAX when every value is NaN), and out[i] = code(2i) << 4 | code(2i + 1)
// with code(e) = nf4_code(w[e] * (1 / absmax)).
float nf4_quantize_whole_block(const float* w, uint8_t* out);

// Which form runs; tests switch between them. set returns false, and changes nothing, where this build or CPU lacks
// the form.
Nf4BlockIsa nf4_block_isa();
bool set_nf4_block_isa(Nf4BlockIsa isa);

}  // namespace dpo
