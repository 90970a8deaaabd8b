// IEEE fp16 and bfloat16 <-> fp32 conversions with round-to-nearest-even, as torch's .to() does.
// Scalar reference code; used by the loader (checkpoint dtypes) and by the bf16 matmul numerics
// (docs/reference/linear4bit.md#prefill-and-training-path).
#pragma once
#include <cstdint>
#include <cstring>
#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif

namespace dpo {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                            // RN-even
  return uint16_t(u >> 16);
}

// Rounds an fp32 value to the nearest bf16 and returns it as fp32.
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

inline float fp16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    float v = float(mant) * (1.0f / 16777216.0f);  // subnormal: mant * 2^-24
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t f32_to_fp16(float f) {
  uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (a < 0x38800000u) {                                   // below the smallest normal: subnormal or zero
    // value * 2^24 rounded to nearest even integer gives the subnormal mantissa
    float v = bits_f32(a) * 16777216.0f;
    uint32_t m = uint32_t(v);
    float rem = v - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
    return uint16_t(sign | m);
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // RN-even on the 13 dropped bits
  return uint16_t(sign | (((r >> 23) - 112u) << 10) | ((r >> 13) & 0x3ffu));
}

inline float round_fp16(float f) { return fp16_to_f32(f32_to_fp16(f)); }

// round_fp16 over an array: the loader's cast of every linear weight before quantizing
// (docs/reference/precision.md#loading), 7B elements at Breeze size. With F16C the hardware conversion is the same IEEE
// round-to-nearest-even (NaN payloads aside, which quantize to code 0 either way), eight at a time.
inline void round_fp16_inplace(float* x, int64_t n) {
  int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; i++) x[i] = round_fp16(x[i]);
}

}  // namespace dpo
