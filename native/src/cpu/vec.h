// Fixed-order lane arithmetic shared by the CPU ops: a 16-float vector (GCC/Clang vector extension, which the
// compiler lowers to AVX-512, AVX2 or SSE) and reductions whose order depends only on the reduced length.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel_set.h"

#if defined(__AVX__) || defined(__AVX512F__) || defined(__SSE__)
#include <immintrin.h>
#endif

// Without AVX-512 GCC notes that passing wide vectors by value has another ABI; these helpers are inline and
// internal to the CPU backend (only its .cpp files include this header), so the note is noise.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// The lane code sits in an inline namespace named after the instruction set (kernel_set.h), so the kernels built once
// per instruction set never share an inline function of another width.
namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

// 16 independent fp32 lanes. Reductions keep one lane per k % 16 and combine lanes in a fixed tree, so a result
// never depends on M, on tiling or on threading (batch-invariant ops, docs/performance.md#batch-invariant-arithmetic),
// and the loops vectorise without -ffast-math. With AVX-512 a lane group is one 64-byte vector; otherwise it is 2 or 4
// native-width parts (GCC lowers 64-byte generic vectors poorly there), with the same 16 lanes and so the same
// arithmetic.
constexpr int kLanes = 16;
#if defined(__AVX512F__)
typedef float f32x16 __attribute__((vector_size(64)));
inline f32x16 splat16(float s) { return f32x16{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s}; }
inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }
#else
// kParts native vectors (AVX: 2 x 8 lanes, SSE/NEON: 4 x 4 lanes); GCC lowers 64-byte generic vectors poorly there.
#if defined(__AVX__)
constexpr int kPartLanes = 8;
#else
constexpr int kPartLanes = 4;
#endif
constexpr int kParts = kLanes / kPartLanes;
typedef float f32part __attribute__((vector_size(kPartLanes * sizeof(float))));
struct f32x16 {
  f32part p[kParts];
};
// The operators are always inlined: `acc += x * w` is one fused multiply-add per part only when the product and the
// sum meet in one function. In a large caller GCC once made `+=` a call of its own, so that tile's products were
// rounded before the add and its bits differed from every other tile's (docs/cpu-kernels.md, "Kernel sets").
#define DPO_LANE_OP [[gnu::always_inline]] inline
DPO_LANE_OP f32x16 operator+(f32x16 a, f32x16 b) {
  for (int i = 0; i < kParts; i++) a.p[i] += b.p[i];
  return a;
}
DPO_LANE_OP f32x16 operator*(f32x16 a, f32x16 b) {
  for (int i = 0; i < kParts; i++) a.p[i] *= b.p[i];
  return a;
}
DPO_LANE_OP f32x16 operator-(f32x16 a, f32x16 b) {
  for (int i = 0; i < kParts; i++) a.p[i] -= b.p[i];
  return a;
}
DPO_LANE_OP f32x16 operator/(f32x16 a, f32x16 b) {
  for (int i = 0; i < kParts; i++) a.p[i] /= b.p[i];
  return a;
}
DPO_LANE_OP f32x16 operator*(f32x16 a, float s) {
  for (int i = 0; i < kParts; i++) a.p[i] *= s;
  return a;
}
DPO_LANE_OP f32x16& operator+=(f32x16& a, f32x16 b) { return a = a + b; }
inline f32x16 splat16(float s) {
  // One broadcast per part. (`f32part{} + s` is a real add, 0 + s: an extra operation on the FMA ports per coefficient
  // of the AVX2 axpy tile, and it turns -0 into +0; only targets without a broadcast intrinsic keep it.)
#if defined(__AVX__)
  const __m256 b = _mm256_set1_ps(s);
#elif defined(__SSE__)
  const __m128 b = _mm_set1_ps(s);
#else
  const f32part b = f32part{} + s;
#endif
  f32part h;
  std::memcpy(&h, &b, sizeof h);
  f32x16 v;
  for (int i = 0; i < kParts; i++) v.p[i] = h;
  return v;
}
// Part by part: one memcpy of the whole struct becomes moves through the stack.
inline f32x16 load16(const float* p) {
  f32x16 v;
  for (int i = 0; i < kParts; i++) std::memcpy(&v.p[i], p + i * kPartLanes, sizeof v.p[i]);
  return v;
}
inline void store16(float* p, f32x16 v) {
  for (int i = 0; i < kParts; i++) std::memcpy(p + i * kPartLanes, &v.p[i], sizeof v.p[i]);
}
#endif
static_assert(sizeof(f32x16) == kLanes * sizeof(float), "16 packed lanes");

// Forces v into registers: GCC otherwise re-reads tile operands from memory for every FMA (load-bound).
inline void keep_in_register(f32x16& v) {
#if defined(__AVX512F__) && defined(__GNUC__)
  __asm__("" : "+v"(v));
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  for (int i = 0; i < kParts; i++) __asm__("" : "+x"(v.p[i]));
#else
  (void)v;
#endif
}

// Sums the 16 lanes in a fixed order: (l, l+8), then (l, l+4), (l, l+2), (l, l+1). Written as halvings of
// registers: GCC compiles the array form to stack round trips that cost more than a tile's K loop at K ~ 900.
inline float reduce16(f32x16 v) {
#if defined(__AVX__)
  __m256 lo, hi;  // lanes 0-7 and 8-15 (the two parts with AVX; GCC extracts the upper half with AVX-512)
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  const __m256 h8 = _mm256_add_ps(lo, hi);
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
#else
  float a[kLanes];
  std::memcpy(a, &v, sizeof a);
  for (int h = kLanes / 2; h >= 1; h >>= 1)
    for (int l = 0; l < h; l++) a[l] += a[l + h];
  return a[0];
#endif
}

// a * b lane by lane, each product rounded on its own: kept in registers, so no later add can fuse with it
// (mul_rn of core/fp_strict.h for 16 lanes; mul_rn's own barrier keeps GCC from vectorising a loop of it).
inline f32x16 mul_rn16(f32x16 a, f32x16 b) {
  f32x16 p = a * b;
  keep_in_register(p);
  return p;
}

// Lane by lane a > b ? a : b (maxps with b second: a NaN a gives b).
inline f32x16 greater_of(f32x16 a, f32x16 b) {
#if defined(__AVX512F__)
  return a > b ? a : b;
#else
  for (int i = 0; i < kParts; i++) a.p[i] = a.p[i] > b.p[i] ? a.p[i] : b.p[i];
  return a;
#endif
}

// Weights stored as bf16 (uint16_t, the upper half of an fp32): widening is exact, so a kernel that reads them
// computes what it computes on the fp32 copy, bit for bit, from half the bytes.
inline float widen(float v) { return v; }
inline float widen(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline f32x16 load16(const uint16_t* p) {
  f32x16 v;
#if defined(__AVX512F__)
  const __mmask16 all = 0xffff;  // maskz forms: GCC 12 warns spuriously on the unmasked ones
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m512i w = _mm512_maskz_slli_epi32(all, _mm512_maskz_cvtepu16_epi32(all, h), 16);
  std::memcpy(&v, &w, sizeof v);
#elif defined(__AVX2__)
  for (int i = 0; i < kParts; i++) {
    const __m256i w = _mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i * kPartLanes))), 16);
    std::memcpy(&v.p[i], &w, sizeof w);
  }
#else
  float a[kLanes];
  for (int i = 0; i < kLanes; i++) a[i] = widen(p[i]);
  v = load16(a);
#endif
  return v;
}

// Adds the tail a[k..n) * b[k..n) into lanes 0..n-k-1 (n - k < 16): the same lanes a zero-padded
// full vector would use.
template <class B>
inline f32x16 fma_tail16(f32x16 acc, const float* a, const B* b, int64_t k, int64_t n) {
  if (k >= n) return acc;  // no tail (padded rows): skip the round trip through memory
  float t[kLanes];
  std::memcpy(t, &acc, sizeof t);
  for (int64_t l = 0; k + l < n; l++) t[l] += a[k + l] * widen(b[k + l]);
  std::memcpy(&acc, t, sizeof t);
  return acc;
}

// dot16's 16 lane sums before their reduction: lane l accumulates a[k] * b[k] for k = l, l+16, ... in order.
inline f32x16 dot16_lanes(const float* a, const float* b, int64_t n) {
  f32x16 acc{};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) acc += load16(a + k) * load16(b + k);
  return fma_tail16(acc, a, b, k, n);
}

// sum_k a[k] * b[k] (n): dot16_lanes, then reduce16.
inline float dot16(const float* a, const float* b, int64_t n) { return reduce16(dot16_lanes(a, b, n)); }

#if defined(__AVX512F__)
// reduce16 of four vectors at once: lane j of the result is reduce16 of the j-th argument, the same pairs added in the
// same order ((l, l+8), (l, l+4), (l, l+2), (l, l+1)), with the four vectors side by side in 128-bit chunks.
inline __m128 reduce16x4(f32x16 a, f32x16 b, f32x16 c, f32x16 d) {
  __m512 A, B, C, D;
  std::memcpy(&A, &a, 64), std::memcpy(&B, &b, 64), std::memcpy(&C, &c, 64), std::memcpy(&D, &d, 64);
  const __mmask16 all = 0xffff;  // maskz forms: GCC 12 warns spuriously on the unmasked ones
  // (l, l+8): chunks 0,1 of a vector plus its chunks 2,3 -> [a8 | b8] and [c8 | d8]
  const __m512 ab =
      _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, A, B, 0x44), _mm512_maskz_shuffle_f32x4(all, A, B, 0xee));
  const __m512 cd =
      _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, C, D, 0x44), _mm512_maskz_shuffle_f32x4(all, C, D, 0xee));
  // (l, l+4): chunk 0 of each 8-lane sum plus its chunk 1 -> [a4 | b4 | c4 | d4]
  const __m512 s4 =
      _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, ab, cd, 0x88), _mm512_maskz_shuffle_f32x4(all, ab, cd, 0xdd));
  // (l, l+2) and (l, l+1) inside each chunk; lanes 0, 4, 8, 12 then hold the four sums
  const __m512 s2 = _mm512_add_ps(s4, _mm512_maskz_permute_ps(all, s4, 0x4e));
  const __m512 s1 = _mm512_add_ps(s2, _mm512_maskz_permute_ps(all, s2, 0xb1));
  const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512 sums = _mm512_maskz_permutexvar_ps(all, pick, s1);
  __m128 r;
  std::memcpy(&r, &sums, sizeof r);  // the low lanes (the cast intrinsic trips the same GCC 12 warning)
  return r;
}
#elif defined(__AVX__)
// The same with two 8-lane parts per vector: 7 shuffles and 8 adds for four sums, where four reduce16 take 12 and 16.
// Lane j of the result is reduce16 of the j-th argument, bit for bit (the same pairs; each add is commutative).
inline __m128 reduce16x4(f32x16 a, f32x16 b, f32x16 c, f32x16 d) {
  // (l, l+8)
  const __m256 a8 = a.p[0] + a.p[1], b8 = b.p[0] + b.p[1], c8 = c.p[0] + c.p[1], d8 = d.p[0] + d.p[1];
  // (l, l+4): [a8.lo | c8.hi] + [a8.hi | c8.lo] -> [a4 | c4] (a blend and one lane-crossing permute per pair)
  const __m256 ac = _mm256_blend_ps(a8, c8, 0xf0) + _mm256_permute2f128_ps(a8, c8, 0x21);
  const __m256 bd = _mm256_blend_ps(b8, d8, 0xf0) + _mm256_permute2f128_ps(b8, d8, 0x21);
  // (l, l+2): [a0 a1 b0 b1 | c0 c1 d0 d1] + [a2 a3 b2 b3 | c2 c3 d2 d3]
  const __m256 s2 = _mm256_shuffle_ps(ac, bd, 0x44) + _mm256_shuffle_ps(ac, bd, 0xee);
  // (l, l+1): lanes 0, 2 of each 128-bit half hold [a, b | c, d]
  const __m256 s1 = s2 + _mm256_permute_ps(s2, 0xb1);
  const __m128 lo = _mm256_castps256_ps128(s1), hi = _mm256_extractf128_ps(s1, 1);
  return _mm_shuffle_ps(lo, hi, 0x88);
}
#endif

// out[i] = reduce16(v_i) for four vectors, bit for bit (attention scores four keys per reduction, where one reduction
// per key cost more than its dot product).
inline void reduce16x4(f32x16 v0, f32x16 v1, f32x16 v2, f32x16 v3, float* out) {
#if defined(__AVX__)
  _mm_storeu_ps(out, reduce16x4(v0, v1, v2, v3));
#else
  out[0] = reduce16(v0), out[1] = reduce16(v1), out[2] = reduce16(v2), out[3] = reduce16(v3);
#endif
}

// a * b + c, rounded once where the machine has fused multiply-add: what the compiler makes of that expression in a
// plain loop, kept where a loop it would vectorise differently (products first, then the sums) must not change bits.
inline float mul_add(float a, float b, float c) {
#if defined(__FMA__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// y[i] += s * x[i] (n): elementwise, so vectorising never changes a result.
inline void axpy(float* y, float s, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += s * x[i];
}

// A per-thread scratch buffer of at least n elements (contents undefined), 64-byte aligned: a large vector's data sits
// 16 bytes into its pages, and there every 16-float load of a tile row would straddle two cache lines.
// (Any element type: the bf16-dot kernels keep words in it.)
template <class T>
inline T* scratch(std::vector<T>& buf, size_t n) {
  constexpr size_t kAlign = 64 / sizeof(T);
  if (buf.size() < n + kAlign) buf.resize(n + kAlign);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - p % 64) % 64) / sizeof(T);
}

// How far ahead of its current position a one-x-row kernel (decode: the NF4 register paths, the bf16 lm_head tile)
// prefetches each weight row, at least. At decode the weights stream from memory once; asking early measured faster at
// model level than leaving the concurrent row streams to the hardware prefetcher, and 4 KiB ahead faster than 512
// bytes (docs/cpu-kernels.md#the-bf16-dot-gemv, #bf16-lm-head). Past a row's end it touches the next rows' bytes or
// nothing (a prefetch never faults). The NF4 register paths round it up to a whole number of tiles
// (gemv_prefetch_bytes).
constexpr int64_t kRowPrefetchBytes = 4096;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// parallel_for grain for `tasks` tasks of `work` flops each: small ops stay on the calling thread,
// where waking the pool would cost more than it saves.
inline int64_t grain_for(double work_per_task, double min_work = 65536.0) {
  if (work_per_task <= 0) return 1;
  const double g = min_work / work_per_task;
  return g < 1.0 ? 1 : int64_t(g + 1.0);
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
