// Export arithmetic (include/dpo/export_ops.h): LoRA folding, the NF4 round trip, and ggml's Q8_0 / Q4_0 blocks.
// Q8_0 / Q4_0 follow the rounding rules of ggml's reference quantizers (ggml-quants.c, quantize_row_q8_0_ref and
// quantize_row_q4_0_ref) so llama.cpp reads back what it would have written; the code here is our own.
#include "dpo/export_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp_strict.h"
#include "core/half.h"
#include "cpu/thread_pool.h"
#include "quant/nf4.h"

namespace dpo {

void lora_merge_into(float* w, const float* a, const float* b, int64_t rows, int64_t cols, int64_t rank, float scale) {
  parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
    std::vector<double> acc(static_cast<size_t>(cols));
    for (int64_t i = r0; i < r1; i++) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const float* bi = b + i * rank;  // (rank) row i of B
      for (int64_t k = 0; k < rank; k++) {
        const double bik = bi[k];
        const float* ak = a + k * cols;  // (cols) row k of A
        for (int64_t j = 0; j < cols; j++) acc[size_t(j)] += bik * double(ak[j]);
      }
      float* wi = w + i * cols;
      for (int64_t j = 0; j < cols; j++) wi[j] = float(double(wi[j]) + double(scale) * acc[size_t(j)]);
    }
  });
}

void nf4_effective_weight(float* w, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  round_fp16_inplace(w, n);  // transformers casts to the storage dtype (fp16) before bnb quantizes
  const Nf4Matrix q = nf4_quantize(w, rows, cols, Nf4StorageDType::F16);
  nf4_dequantize(q, w);  // fp32 -> fp16 storage rounding
  parallel_for(n, 1 << 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) w[i] = round_bf16(w[i]);  // the matmul's bf16 operand
  });
}

namespace {

inline void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_fp16(v);
  p[0] = uint8_t(h & 0xff);
  p[1] = uint8_t(h >> 8);
}

void q8_0_block(const float* x /*(32)*/, uint8_t* out /*(34)*/) {
  float amax = 0.0f;
  for (int j = 0; j < kGgmlBlock; j++) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  for (int j = 0; j < kGgmlBlock; j++) out[2 + j] = uint8_t(int8_t(std::roundf(x[j] * id)));
}

void q4_0_block(const float* x /*(32)*/, uint8_t* out /*(18)*/) {
  // The value of largest magnitude, with its sign, maps to code 0 (-8 * d): the block uses the full range on the
  // side where the extreme lies.
  float amax = 0.0f, vmax = 0.0f;
  for (int j = 0; j < kGgmlBlock; j++) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      vmax = x[j];
    }
  }
  const float d = vmax / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  for (int j = 0; j < kGgmlBlock / 2; j++) {
    // x * id + 8.5 lies in [0.5, 16.5]; truncation rounds it half up to a code, and 16 (only x = -vmax) becomes 15.
    // The product is rounded on its own (no FMA), as ggml's portable code and gguf-py's numpy path compute it.
    const int lo = std::min(15, int(int8_t(mul_rn(x[j], id) + 8.5f)));
    const int hi = std::min(15, int(int8_t(mul_rn(x[j + 16], id) + 8.5f)));
    out[2 + j] = uint8_t(lo | (hi << 4));  // element j in the low nibble, element j + 16 in the high one
  }
}

template <typename BlockFn>
void quantize_blocks(const float* x, int64_t n, uint8_t* out, int64_t block_bytes, BlockFn fn) {
  const int64_t blocks = n / kGgmlBlock;
  parallel_for(blocks, 1024, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) fn(x + b * kGgmlBlock, out + b * block_bytes);
  });
}

}  // namespace

void quantize_q8_0(const float* x, int64_t n, uint8_t* out) { quantize_blocks(x, n, out, kQ8_0BlockBytes, q8_0_block); }
void quantize_q4_0(const float* x, int64_t n, uint8_t* out) { quantize_blocks(x, n, out, kQ4_0BlockBytes, q4_0_block); }

void convert_f16(const float* x, int64_t n, uint16_t* out) {
  parallel_for(n, 1 << 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) out[i] = f32_to_fp16(x[i]);
  });
}

}  // namespace dpo
