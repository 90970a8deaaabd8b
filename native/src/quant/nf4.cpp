// bitsandbytes NF4 + double quantization, scalar reference (docs/reference/nf4.md): quantize, dequantize, the packed
// layout. Every rounding step follows bnb 0.43.1 so that a matrix quantized here equals one quantized by bnb bit for
// bit.
#include "nf4.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include "../core/fp_strict.h"
#include "../core/half.h"
#include "dpo/errors.h"
#include "nf4_block_quantize.h"

namespace dpo {

// Index -> value (docs/reference/nf4.md#code-table); the decimal literals are exactly the fp32 values bf800000 ...
// 3f800000.
const float kNf4Table[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// docs/reference/nf4.md#code-table: the 15 midpoints of dQuantizeNF4's decision tree, as the fp32 literals the CUDA
// code compares against.
const float kNf4Midpoints[15] = {
    -0.8480964004993439f,  -0.6106329262256622f,   -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
    -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,   0.2035212516784668f,
    0.2920137718319893f,   0.3893125355243683f,    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f,
};

namespace {

// docs/reference/nf4.md#dequantisation: the fp32 product is stored as QuantState.dtype (RN).
inline float round_storage(float v, Nf4StorageDType dt) {
  switch (dt) {
    case Nf4StorageDType::F16: return round_fp16(v);
    case Nf4StorageDType::BF16: return round_bf16(v);
    case Nf4StorageDType::F32: return v;
  }
  return v;
}

inline uint8_t nibble(const uint8_t* packed, int64_t e) {
  const uint8_t byte = packed[e >> 1];
  // The even element is the high nibble (docs/reference/nf4.md#blockwise-quantisation).
  return (e & 1) ? uint8_t(byte & 0x0f) : uint8_t(byte >> 4);
}

const float* nested_code_of(const Nf4Matrix& m) {
  return m.nested_code.empty() ? dynamic_map_signed() : m.nested_code.data();
}

void check_shape(const Nf4Matrix& m) {
  const int64_t n = m.numel(), blocks = m.blocks();
  const int64_t nested = (blocks + kNestedBlockSize - 1) / kNestedBlockSize;
  if (m.rows < 0 || m.cols < 0) fail(ErrorCode::BadModel, "nf4: negative shape");
  if (int64_t(m.packed.size()) != (n + 1) / 2)
    fail(ErrorCode::BadModel, "nf4: packed weight has " + std::to_string(m.packed.size()) + " bytes, expected " +
                                  std::to_string((n + 1) / 2));
  if (int64_t(m.absmax_q.size()) != blocks)
    fail(ErrorCode::BadModel,
         "nf4: absmax has " + std::to_string(m.absmax_q.size()) + " entries, expected " + std::to_string(blocks));
  if (int64_t(m.absmax2.size()) != nested)
    fail(ErrorCode::BadModel,
         "nf4: nested_absmax has " + std::to_string(m.absmax2.size()) + " entries, expected " + std::to_string(nested));
}

}  // namespace

// docs/reference/nf4.md#code-table: the number of midpoints x strictly exceeds. Equal to bnb's decision tree because
// the midpoints are sorted; NaN compares false everywhere and gets code 0, as in the tree.
uint8_t nf4_code(float x) {
  int code = 0;
  for (int i = 0; i < 15; i++) code += x > kNf4Midpoints[i] ? 1 : 0;
  return uint8_t(code);
}

size_t Nf4Matrix::bytes() const { return packed.size() + absmax_q.size() + absmax2.size() * sizeof(float); }

// The fp32 absmax cache and the fast-path flags derived from it (docs/cpu-kernels.md#the-bf16-dot-gemv,
// #the-fp16-table-by-float-adds): both constructors end here, once the double-quantized parts are set.
namespace {
void fill_absmax_cache(Nf4Matrix& m) {
  m.absmax.resize(size_t(m.blocks()));
  nf4_dequantize_absmax(m, m.absmax.data());
  m.bf16_dot_exact = nf4_scales_in_bf16_dot_range(m.absmax.data(), m.blocks());
  m.fp16_table_normal = m.dtype == Nf4StorageDType::F16 && nf4_scales_fp16_table_normal(m.absmax.data(), m.blocks());
}
}  // namespace

namespace {

// Blocks [b0, b1) of m's flat elements, whose values start at w (element b0 * 64): each block's absmax and codes.
void quantize_blocks(Nf4Matrix& m, float* absmax, const float* w, int64_t b0, int64_t b1) {
  const int64_t n = m.numel(), base = b0 * kNf4BlockSize;
  for (int64_t b = b0; b < b1; b++) {
    const int64_t e0 = b * kNf4BlockSize, e1 = std::min(n, e0 + kNf4BlockSize);
    if (e1 - e0 == kNf4BlockSize) {  // all but a partial last block; e0 is even, so it fills 32 whole bytes
      absmax[b] = nf4_quantize_whole_block(w + (e0 - base), m.packed.data() + (e0 >> 1));
      continue;
    }
    // The partial last block, element by element. fmax semantics (a NaN element never wins) written as a
    // compare-select, which vectorises.
    float amax = -FLT_MAX;  // the CUDA reduction's start value (docs/reference/nf4.md#blockwise-quantisation)
    for (int64_t e = e0; e < e1; e++) {
      const float v = std::fabs(w[e - base]);
      amax = v > amax ? v : amax;
    }
    absmax[b] = amax;
    // x = w * (1/absmax), a multiply by the reciprocal, not a division. absmax 0 -> inf -> 0*inf = NaN -> code 0,
    // so an all-zero block dequantizes to NF4[0] * 0 = -0.0.
    const float inv = 1.0f / amax;
    for (int64_t e = e0; e < e0 + kNf4BlockSize && (e >> 1) < int64_t(m.packed.size()); e++) {
      const float x = (e < n ? w[e - base] : 0.0f) * inv;
      const uint8_t c = nf4_code(x);
      m.packed[size_t(e >> 1)] |= (e & 1) ? c : uint8_t(c << 4);
    }
  }
}

// Sets `rows`, `cols`, `dtype` and sizes `packed` (zeroed: the partial last block ORs its nibbles in).
Nf4Matrix shaped(int64_t rows, int64_t cols, Nf4StorageDType dtype) {
  if (rows < 0 || cols < 0) fail(ErrorCode::BadInput, "nf4_quantize: negative shape");
  Nf4Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.dtype = dtype;
  m.packed.assign(size_t((m.numel() + 1) / 2), 0);
  return m;
}

// Double quantization of the per-block absmax and the fp32 cache; absmax is consumed.
void double_quantize(Nf4Matrix& m, std::vector<float>& absmax) {
  const int64_t blocks = m.blocks();
  // Double quantization (docs/reference/nf4.md#double-quantisation). offset = absmax.mean(): torch reduces in fp32 on
  // the GPU with its own tree order, which cannot be replayed here; we sum in double (exact enough that the result is
  // the correctly rounded mean for any realistic block count) and cast to fp32. Pre-quantized checkpoints carry their
  // offset (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints).
  double sum = 0.0;
  for (float a : absmax) sum += double(a);
  m.absmax_offset = blocks > 0 ? float(sum / double(blocks)) : 0.0f;
  for (float& a : absmax) a = a - m.absmax_offset;  // torch `absmax -= offset`, fp32

  // quantize_blockwise(absmax, code=signed dynamic map, blocksize=256): kQuantizeBlockwise<float,256,2,0,General8bit>.
  const int64_t nested = (blocks + kNestedBlockSize - 1) / kNestedBlockSize;
  const float* code8 = dynamic_map_signed();
  m.absmax2.assign(size_t(nested), 0.0f);
  m.absmax_q.assign(size_t(blocks), 0);
  for (int64_t c = 0; c < nested; c++) {
    const int64_t b0 = c * kNestedBlockSize, b1 = std::min(blocks, b0 + kNestedBlockSize);
    float amax = -FLT_MAX;
    for (int64_t b = b0; b < b1; b++) amax = std::fmax(amax, std::fabs(absmax[size_t(b)]));
    m.absmax2[size_t(c)] = amax;
    const float inv = 1.0f / amax;
    for (int64_t b = b0; b < b1; b++) m.absmax_q[size_t(b)] = dynamic_code(code8, absmax[size_t(b)] * inv);
  }

  fill_absmax_cache(m);
}

}  // namespace

Nf4Matrix nf4_quantize(const float* w, int64_t rows, int64_t cols, Nf4StorageDType dtype) {
  Nf4Matrix m = shaped(rows, cols, dtype);
  // kQuantizeBlockwise<T,64,2,0,NF4> (docs/reference/nf4.md#blockwise-quantisation): blocks are 64 consecutive flat
  // elements, so with K % 64 != 0 a block spans the end of one row and the start of the next. The last block may be
  // partial; bnb loads the missing elements as 0, which never raise the max and, when n is odd, give the final low
  // nibble code(0 * 1/absmax).
  std::vector<float> absmax(static_cast<size_t>(m.blocks()));
  quantize_blocks(m, absmax.data(), w, 0, m.blocks());
  double_quantize(m, absmax);
  return m;
}

Nf4Matrix nf4_quantize_streamed(int64_t rows, int64_t cols, Nf4StorageDType dtype, const Nf4ElementReader& read) {
  Nf4Matrix m = shaped(rows, cols, dtype);
  const int64_t n = m.numel(), blocks = m.blocks();
  std::vector<float> absmax(static_cast<size_t>(blocks));
  // Whole blocks per chunk, so a chunk's blocks are the same as the whole matrix's; 64 KiB elements (256 KiB of
  // fp32) stay in the L2 between the conversion and the quantization.
  constexpr int64_t kChunkBlocks = 1024;
  std::vector<float> chunk(size_t(std::min(blocks, kChunkBlocks) * kNf4BlockSize));
  for (int64_t b0 = 0; b0 < blocks; b0 += kChunkBlocks) {
    const int64_t b1 = std::min(blocks, b0 + kChunkBlocks);
    read(b0 * kNf4BlockSize, std::min(n, b1 * kNf4BlockSize), chunk.data());
    quantize_blocks(m, absmax.data(), chunk.data(), b0, b1);
  }
  double_quantize(m, absmax);
  return m;
}

Nf4Matrix nf4_from_parts(int64_t rows, int64_t cols, std::vector<uint8_t> packed, std::vector<uint8_t> absmax_q,
                         std::vector<float> absmax2, float offset, const float* nested_code, Nf4StorageDType dtype) {
  Nf4Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.packed = std::move(packed);
  m.absmax_q = std::move(absmax_q);
  m.absmax2 = std::move(absmax2);
  m.absmax_offset = offset;
  m.dtype = dtype;
  check_shape(m);
  // docs/reference/nf4.md#the-linspace-caveat: the checkpoint's nested_quant_map is the map its absmax codes index;
  // keep it only when it differs from the built-in scalar-path map (it can differ in the last bits, depending on
  // torch's linspace path).
  if (nested_code) {
    const float* builtin = dynamic_map_signed();
    bool same = true;
    for (int i = 0; i < 256; i++) same = same && f32_bits(nested_code[i]) == f32_bits(builtin[i]);
    if (!same) m.nested_code.assign(nested_code, nested_code + 256);
  }
  fill_absmax_cache(m);
  return m;
}

// docs/reference/nf4.md#dequantisation: kDequantizeBlockwise<float, General8bit> gives code8[q] * absmax2 (fp32
// multiply, rounded), then torch adds the offset as a separate fp32 op. The multiply must not be fused with the add.
void nf4_dequantize_absmax(const Nf4Matrix& m, float* absmax_out) {
  const float* code8 = nested_code_of(m);
  const int64_t blocks = m.blocks();
  for (int64_t b = 0; b < blocks; b++)
    absmax_out[b] = mul_rn(code8[m.absmax_q[size_t(b)]], m.absmax2[size_t(b / kNestedBlockSize)]) + m.absmax_offset;
}

namespace {

// Decodes flat elements [e0, e1) of m into out, each NF4[c] * absmax[e/64] in fp32 rounded to the storage dtype.
void dequantize_range(const Nf4Matrix& m, const float* absmax, int64_t e0, int64_t e1, float* out) {
  int64_t e = e0;
  while (e < e1) {
    const int64_t b = e / kNf4BlockSize, bend = std::min(e1, (b + 1) * kNf4BlockSize);
    float lut[16];  // the 16 values this block can take
    for (int c = 0; c < 16; c++) lut[c] = round_storage(kNf4Table[c] * absmax[b], m.dtype);
    for (; e < bend; e++) *out++ = lut[nibble(m.packed.data(), e)];
  }
}

}  // namespace

const float* nf4_absmax(const Nf4Matrix& m, std::vector<float>& tmp) {
  if (int64_t(m.absmax.size()) == m.blocks()) return m.absmax.data();
  tmp.resize(size_t(m.blocks()));
  nf4_dequantize_absmax(m, tmp.data());
  return tmp.data();
}

void nf4_dequantize(const Nf4Matrix& m, float* out) {
  std::vector<float> tmp;
  dequantize_range(m, nf4_absmax(m, tmp), 0, m.numel(), out);
}

void nf4_dequantize_row(const Nf4Matrix& m, int64_t row, float* out) {
  if (row < 0 || row >= m.rows) fail(ErrorCode::BadInput, "nf4_dequantize_row: row out of range");
  std::vector<float> tmp;
  dequantize_range(m, nf4_absmax(m, tmp), row * m.cols, (row + 1) * m.cols, out);
}

}  // namespace dpo
