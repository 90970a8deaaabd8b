// bitsandbytes-compatible NF4 with double quantization (docs/reference/nf4.md).
// Scalar reference code: the packed layout, absmax nesting and rounding rules match bnb 0.43.1 bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace dpo {

constexpr int kNf4BlockSize = 64;       // elements per first-level absmax block (docs/reference/nf4.md)
constexpr int kNestedBlockSize = 256;   // first-level absmax values per nested block (docs/reference/nf4.md)

// The 16 NF4 code values, index -> value (docs/reference/nf4.md#code-table).
extern const float kNf4Table[16];

// The 15 midpoints of dQuantizeNF4's decision tree (docs/reference/nf4.md#code-table), ascending.
extern const float kNf4Midpoints[15];

// docs/reference/nf4.md#code-table: code = number of the 15 midpoints that x strictly exceeds (ties go down, NaN -> 0).
uint8_t nf4_code(float x);

// The signed / unsigned 8-bit dynamic maps of create_dynamic_map (docs/reference/nf4.md#the-dynamic-8-bit-map, torch's
// scalar linspace path), 256 entries each.
const float* dynamic_map_signed();
const float* dynamic_map_unsigned();
// Builds a map from the construction rules of docs/reference/nf4.md#the-dynamic-8-bit-map with torch's scalar linspace
// path (what dynamic_map.cpp holds); the tests check that the hardcoded tables above equal it. out: (256).
void dynamic_map_build(bool is_signed, float* out);

// The 8-bit nearest-code search of bnb's dQuantize<0> (docs/reference/nf4.md#double-quantisation): binary search from
// pivot 127, then midpoint test.
// `code` is a sorted 256-entry map; x is already normalised to [-1, 1].
uint8_t dynamic_code(const float* code, float x);

// The storage dtype of the quantized weight (QuantState.dtype): dequantized values are rounded to it
// (docs/reference/nf4.md#dequantisation).
enum class Nf4StorageDType { F16, BF16, F32 };

// An NF4 + double-quant weight matrix W (N, K) = (out_features, in_features), row-major flattened;
// blocks are 64 consecutive flat elements and may cross rows when K % 64 != 0 (e.g. FFN 172).
struct Nf4Matrix {
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K
  std::vector<uint8_t> packed;  // (ceil(N*K/2)) byte k = code(2k) << 4 | code(2k+1): even element high nibble
  std::vector<uint8_t> absmax_q;  // (blocks) codes into dynamic_map_signed(), relative to absmax_offset
  std::vector<float> absmax2;  // (ceil(blocks/256)) nested scales
  float absmax_offset = 0.0f;  // mean of the first-level absmax (fp32)
  std::vector<float> absmax;  // (blocks) dequantized first-level absmax, cached for the kernels
  std::vector<float> nested_code;  // (256) the checkpoint's nested_quant_map when it differs from
                                   // dynamic_map_signed(), else empty (docs/reference/nf4.md#the-linspace-caveat)
  Nf4StorageDType dtype = Nf4StorageDType::F16;
  // Every block's absmax in the range where the CPU's bf16-dot GEMV equals its FMA path bit for bit
  // (nf4_scales_in_bf16_dot_range); set by nf4_quantize / nf4_from_parts, false (the FMA path) otherwise.
  bool bf16_dot_exact = false;
  // Storage dtype fp16 and every block's absmax in the range where the CPU GEMV rounds a block's table to fp16 with
  // float adds instead of conversions (nf4_scales_fp16_table_normal); set by nf4_quantize / nf4_from_parts.
  bool fp16_table_normal = false;
  // The AVX2 decode GEMV's byte tables, block b's 16 bf16 entries split into their low bytes (32 b ..) and high bytes
  // (32 b + 16 ..); null until the CPU backend prepares the matrix within its budget, and shared by copies
  // (docs/cpu-kernels.md#cached-byte-tables-on-avx2). A cache of values the other fields define, set at load before
  // any kernel reads the matrix: mutable.
  mutable std::shared_ptr<const std::vector<uint8_t>> gemv_byte_tables;

  int64_t numel() const { return rows * cols; }
  int64_t blocks() const { return (numel() + kNf4BlockSize - 1) / kNf4BlockSize; }
  size_t bytes() const;  // packed + absmax_q + absmax2 (what the format costs, without the cache)
};

// Quantizes w (N*K fp32 values, already rounded to the storage dtype as the reference does) with NF4 blocks of 64,
// then double-quantizes the absmax (offset = mean, 8-bit signed dynamic map, blocks of 256) and fills `absmax`.
Nf4Matrix nf4_quantize(const float* w, int64_t rows, int64_t cols, Nf4StorageDType dtype = Nf4StorageDType::F16);

// Writes the flat elements [e0, e1) of a matrix into out, as fp32 values rounded to the storage dtype.
using Nf4ElementReader = std::function<void(int64_t e0, int64_t e1, float* out)>;
// nf4_quantize of a matrix read in chunks of whole blocks (the same result, bit for bit): the loader quantizes a
// checkpoint tensor straight from its file mapping without an fp32 copy of the whole matrix.
Nf4Matrix nf4_quantize_streamed(int64_t rows, int64_t cols, Nf4StorageDType dtype, const Nf4ElementReader& read);

// Builds a matrix from bitsandbytes pre-quantized parts (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints) and
// fills the `absmax` cache.
Nf4Matrix nf4_from_parts(int64_t rows, int64_t cols, std::vector<uint8_t> packed, std::vector<uint8_t> absmax_q,
                         std::vector<float> absmax2, float offset, const float* nested_code /* 256 or nullptr */,
                         Nf4StorageDType dtype);

// docs/cpu-kernels.md#the-bf16-dot-gemv: true when every dequantized absmax a is 0 or finite with
// 2^-46 <= |a| <= 2^15, so every decoded weight is 0, or a finite bf16 value with 2^-50 <= |w| <= 2^15.
bool nf4_scales_in_bf16_dot_range(const float* absmax, int64_t blocks);
// docs/cpu-kernels.md#the-fp16-table-by-float-adds: true when every dequantized absmax a is a float with
// 2^-10 <= a <= 2^15 (positive, finite), so every nonzero entry of a block's table NF4[i] * a is a normal fp16 value.
bool nf4_scales_fp16_table_normal(const float* absmax, int64_t blocks);
// Every v[i] is 0 or lo <= |v[i]| <= hi (false when one is NaN); also the bf16-dot GEMV's per-call check of x.
bool zero_or_magnitude_within(const float* v, int64_t n, float lo, float hi);

// docs/reference/nf4.md#dequantisation, step 1: a[b] = code8[q[b]] * absmax2[b/256] + offset (fp32).
void nf4_dequantize_absmax(const Nf4Matrix& m, float* absmax_out /* (blocks) */);
// The dequantized first-level absmax: the matrix's own cache (m.absmax), or computed into `tmp` when it is absent.
const float* nf4_absmax(const Nf4Matrix& m, std::vector<float>& tmp);

// docs/reference/nf4.md#dequantisation: w(e) = NF4[nibble(e)] * a[e/64] in fp32, rounded to the storage dtype. out:
// (N*K).
void nf4_dequantize(const Nf4Matrix& m, float* out);

// One dequantized row j (K values), same rounding as nf4_dequantize; used by the fused CPU kernels.
void nf4_dequantize_row(const Nf4Matrix& m, int64_t row, float* out);

}  // namespace dpo
