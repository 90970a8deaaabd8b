// The two forms of the whole-block NF4 quantizer (nf4_block_quantize.h) and the choice between them at run time.
// Both compute the block's absmax the way the scalar loop does (a NaN never becomes it: x86's max keeps its second
// operand when the first is NaN) and the same codes: the portable form counts the midpoints each x exceeds, the AVX2
// form finds that count by a binary search over the sorted midpoints (4 compares instead of 15; NaN exceeds none and
// stays code 0).
#include "nf4_block_quantize.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <string>
#if defined(__x86_64__)
#include <immintrin.h>
#define DPO_NF4_BLOCK_X86 1
#endif

#include "nf4.h"

namespace dpo {
namespace {

float quantize_block_portable(const float* w, uint8_t* out) {
  float amax = -FLT_MAX;  // the CUDA reduction's start value (docs/reference/nf4.md#blockwise-quantisation)
  for (int i = 0; i < kNf4BlockSize; i++) {
    const float v = std::fabs(w[i]);  // +0 for -0, as bnb's fabsf
    amax = v > amax ? v : amax;  // fmax semantics as a compare-select, which vectorises
  }
  // x = w * (1/absmax), a multiply by the reciprocal, not a division. absmax 0 -> inf -> 0*inf = NaN -> code 0.
  const float inv = 1.0f / amax;
  float xs[kNf4BlockSize];
  int32_t codes[kNf4BlockSize];
  for (int i = 0; i < kNf4BlockSize; i++) xs[i] = w[i] * inv, codes[i] = 0;
  for (const float mid : kNf4Midpoints)  // nf4_code as 15 passes of compares (each a few vector instructions)
    for (int i = 0; i < kNf4BlockSize; i++) codes[i] += xs[i] > mid ? 1 : 0;
  for (int i = 0; i < kNf4BlockSize / 2; i++) out[i] = uint8_t(codes[2 * i] << 4 | codes[2 * i + 1]);
  return amax;
}

#if DPO_NF4_BLOCK_X86
// The binary search's midpoints by level: after the first compare (against M7) the code so far is 0 or 8 and the
// next midpoint is M3 or M11, then one of M1, M5, M9, M13, then an even one; code >> 3, >> 2 and >> 1 index them.
// Built on first use: the midpoints live in another file, so a table initialized at start-up could be read before
// it is filled.
struct MidpointLevels {
  alignas(32) float l4[8] = {};
  alignas(32) float l2[8] = {};
  alignas(32) float l1[8] = {};
};

const MidpointLevels& midpoint_levels() {
  static const MidpointLevels levels = [] {
    MidpointLevels t;
    for (int i = 0; i < 8; i++) {
      if (i < 2) t.l4[i] = kNf4Midpoints[8 * i + 3];
      if (i < 4) t.l2[i] = kNf4Midpoints[4 * i + 1];
      t.l1[i] = kNf4Midpoints[2 * i];
    }
    return t;
  }();
  return levels;
}

// Adds `step` to code where x exceeds the midpoint.
__attribute__((target("avx2"))) inline __m256i add_if_above(__m256i code, __m256 x, __m256 mid, int step) {
  const __m256i above = _mm256_castps_si256(_mm256_cmp_ps(x, mid, _CMP_GT_OQ));
  return _mm256_add_epi32(code, _mm256_and_si256(above, _mm256_set1_epi32(step)));
}

// AVX2 only: an AVX-512 form of the same search made nf4_quantize about 7% faster on Zen 4 (1.19 against 1.28 ns
// per weight, a 14336 x 4096 matrix), about 2% of a 7B load: not worth a second copy (BENCHMARKS.md).
__attribute__((target("avx2"))) float quantize_block_avx2(const float* w, uint8_t* out) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 v[8], amax = _mm256_set1_ps(-FLT_MAX);
  for (int j = 0; j < 8; j++) {
    v[j] = _mm256_loadu_ps(w + 8 * j);
    amax = _mm256_max_ps(_mm256_and_ps(v[j], magnitude), amax);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, amax);
  const float a = *std::max_element(lanes, lanes + 8);  // no NaN among them: each starts at -FLT_MAX
  const __m256 inv = _mm256_set1_ps(1.0f / a), m7 = _mm256_set1_ps(kNf4Midpoints[7]);
  const MidpointLevels& m = midpoint_levels();
  const __m256 l4 = _mm256_load_ps(m.l4), l2 = _mm256_load_ps(m.l2), l1 = _mm256_load_ps(m.l1);
  alignas(32) int32_t codes[kNf4BlockSize];
  for (int j = 0; j < 8; j++) {
    const __m256 x = _mm256_mul_ps(v[j], inv);
    __m256i code = add_if_above(_mm256_setzero_si256(), x, m7, 8);
    code = add_if_above(code, x, _mm256_permutevar8x32_ps(l4, _mm256_srli_epi32(code, 3)), 4);
    code = add_if_above(code, x, _mm256_permutevar8x32_ps(l2, _mm256_srli_epi32(code, 2)), 2);
    code = add_if_above(code, x, _mm256_permutevar8x32_ps(l1, _mm256_srli_epi32(code, 1)), 1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(codes + 8 * j), code);
  }
  for (int i = 0; i < kNf4BlockSize / 2; i++) out[i] = uint8_t(codes[2 * i] << 4 | codes[2 * i + 1]);
  return a;
}
#endif

bool supported(Nf4BlockIsa isa) {
#if DPO_NF4_BLOCK_X86
  __builtin_cpu_init();  // the choice may be made before libgcc's own constructor has run
  if (isa == Nf4BlockIsa::Avx2) return __builtin_cpu_supports("avx2");
#endif
  return isa == Nf4BlockIsa::Portable;
}

// AVX2 where the CPU runs it, unless DPO_CPU_KERNELS=generic holds the kernels to the baseline, so that a run
// measuring that set on a wider machine loads as such a machine would
// (docs/cpu-kernels.md#kernel-sets-avx-512-avx2-and-baseline-chosen-at-run-time).
Nf4BlockIsa widest() {
  const char* env = std::getenv("DPO_CPU_KERNELS");
  if (env && std::string(env) == "generic") return Nf4BlockIsa::Portable;
  return supported(Nf4BlockIsa::Avx2) ? Nf4BlockIsa::Avx2 : Nf4BlockIsa::Portable;
}

// Chosen on first use (a static initializer elsewhere may quantize before this file's would have run).
std::atomic<Nf4BlockIsa>& chosen() {
  static std::atomic<Nf4BlockIsa> isa{widest()};
  return isa;
}

}  // namespace

float nf4_quantize_whole_block(const float* w, uint8_t* out) {
  switch (chosen().load(std::memory_order_relaxed)) {
#if DPO_NF4_BLOCK_X86
    case Nf4BlockIsa::Avx2: return quantize_block_avx2(w, out);
#endif
    default: return quantize_block_portable(w, out);
  }
}

Nf4BlockIsa nf4_block_isa() { return chosen().load(); }

bool set_nf4_block_isa(Nf4BlockIsa isa) {
  if (!supported(isa)) return false;
  chosen().store(isa);
  return true;
}

}  // namespace dpo
