// Weight arithmetic for exporting a trained model (docs/exports.md): folding a LoRA adapter into its base weight,
// the weights the NF4 path really computes with, and llama.cpp's block formats for GGUF files.
#pragma once
#include <cstdint>

namespace dpo {

// w += scale * b @ a, in fp32 (each element's rank sum accumulated in double, then rounded once).
// w: (rows, cols) row-major; a: (rank, cols) = PEFT lora_A; b: (rows, rank) = PEFT lora_B.
void lora_merge_into(float* w, const float* a, const float* b, int64_t rows, int64_t cols, int64_t rank, float scale);

// Replaces w (rows, cols) by the values the engine's 4-bit path multiplies with when the model is loaded with
// quant nf4: the fp16 cast, NF4 + double quantization, dequantization to fp16, then bf16 (docs/decisions.md).
void nf4_effective_weight(float* w, int64_t rows, int64_t cols);

// llama.cpp block formats (ggml-common.h layout; docs/gguf.md): blocks of 32 consecutive values.
constexpr int64_t kGgmlBlock = 32;
constexpr int64_t kQ8_0BlockBytes = 34;  // fp16 scale + 32 int8
constexpr int64_t kQ4_0BlockBytes = 18;  // fp16 scale + 16 bytes of two 4-bit codes
// x: (n) with n % 32 == 0; out: (n / 32 * block bytes).
void quantize_q8_0(const float* x, int64_t n, uint8_t* out);
void quantize_q4_0(const float* x, int64_t n, uint8_t* out);
// x: (n) -> IEEE fp16, round to nearest even.
void convert_f16(const float* x, int64_t n, uint16_t* out);

}  // namespace dpo
