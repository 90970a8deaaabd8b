// Greedy tokens from a bf16 weight matrix through its int8 sketch
// (docs/cpu-kernels.md#greedy-tokens-from-an-int8-sketch): out[m] is argmax_rows(matmul_bf16_forward(x, w))[m], the
// same index, while the pass streams the 1-byte sketch instead of the 2-byte weights. Every row's sketched logit A_v
// comes with a bound b_v on its distance to the exact logit; the rows whose A_v + b_v reaches max_u (A_u - b_u) are
// rescored with matmul's own per-output arithmetic, and no other row can beat or tie the best of them. Compiled per
// kernel set: the rescoring must be the set's matmul.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernel_set.h"
#include "thread_pool.h"
#include "vec.h"

DPO_DECLARE_OWN_MATMUL_KERNELS()

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {
namespace {

// 16 int8 values as floats (exact).
inline f32x16 load16_i8(const int8_t* p) {
  f32x16 v;
#if defined(__AVX512F__)
  const __mmask16 all = 0xffff;  // maskz forms: GCC 12 warns spuriously on the unmasked ones
  const __m512 f = _mm512_maskz_cvtepi32_ps(
      all, _mm512_maskz_cvtepi8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  std::memcpy(&v, &f, sizeof v);
#elif defined(__AVX2__)
  for (int i = 0; i < kParts; i++) {
    const __m256 f =
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + i * kPartLanes))));
    std::memcpy(&v.p[i], &f, sizeof f);
  }
#else
  float a[kLanes];
  for (int i = 0; i < kLanes; i++) a[i] = float(p[i]);
  v = load16(a);
#endif
  return v;
}

// sum_k a[k] * w[k] in matmul's per-output order (dot16: one lane per k % 16, fma_tail16 for the rest, reduce16).
float exact_dot(const float* a, const uint16_t* w, int64_t n) {
  f32x16 acc{};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) acc += load16(a + k) * load16(w + k);
  return reduce16(fma_tail16(acc, a, w, k, n));
}

// sum_k a[k] * q[k] in any order (the sketch's bound holds for every one): lanes, then the tail.
float sketch_dot_tail(f32x16 acc, const float* a, const int8_t* q, int64_t k, int64_t n) {
  float s = reduce16(acc);
  for (; k < n; k++) s += a[k] * float(q[k]);
  return s;
}

// The sketched logits A (M, N) of sketch rows [v0, v1) and, for each x row, the largest A_v - b_v among them
// (lo_max, M entries). One row at a time, asked for 4 KiB ahead: a single stream with explicit prefetches measured
// 1.2-1.6x faster here than groups of 2-6 rows sharing each load of x. Two accumulators per row, as the sketch's
// bound holds for any order: one FMA chain would cap a core at 16 weights per FMA latency, about the memory rate.
void sketched_logits(float* A, double* lo_max, const float* x, const double* xnorm, const Bf16ArgmaxSketch& s, int M,
                     int64_t v0, int64_t v1) {
  const int64_t K = s.cols, N = s.rows;
  for (int m = 0; m < M; m++) lo_max[m] = -INFINITY;
  for (int64_t v = v0; v < v1; v++) {
    const int8_t* q = s.q.data() + v * K;
    for (int m = 0; m < M; m++) {
      const float* xm = x + m * K;
      f32x16 acc0{}, acc1{};
      int64_t k = 0;
      for (; k + 2 * kLanes <= K; k += 2 * kLanes) {
        if (m == 0 && k % 64 == 0) __builtin_prefetch(q + k + kRowPrefetchBytes);
        acc0 += load16(xm + k) * load16_i8(q + k);
        acc1 += load16(xm + k + kLanes) * load16_i8(q + k + kLanes);
      }
      if (k + kLanes <= K) {
        acc0 += load16(xm + k) * load16_i8(q + k);
        k += kLanes;
      }
      const float a = sketch_dot_tail(acc0 + acc1, xm, q, k, K) * s.scale[size_t(v)];
      A[m * N + v] = a;
      lo_max[m] = std::max(lo_max[m], double(a) - xnorm[m] * s.slack[size_t(v)]);
    }
  }
}

}  // namespace

bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& s, int M, int K, int N) {
  if (M <= 0 || K <= 0 || N <= 0 || s.rows != N || s.cols != K) return false;
  std::vector<double> xnorm(static_cast<size_t>(M));
  for (int m = 0; m < M; m++) {
    double ss = 0.0;
    for (int64_t k = 0; k < K; k++) ss += double(x[m * K + k]) * double(x[m * K + k]);
    xnorm[size_t(m)] = std::sqrt(ss) * (1.0 + 1e-9);
    if (!std::isfinite(xnorm[size_t(m)])) return false;  // inf or NaN in x: the plain ops define that result
  }
  thread_local std::vector<float> A_buf;
  float* A = scratch(A_buf, size_t(M) * N);
  constexpr int64_t kTaskRows = 256;
  const int64_t tasks = ceil_div(N, kTaskRows);
  std::vector<double> lo_task(size_t(tasks * M));
  parallel_for(tasks, grain_for(2.0 * M * kTaskRows * K), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++)
      sketched_logits(A, lo_task.data() + t * M, x, xnorm.data(), s, M, t * kTaskRows,
                      std::min<int64_t>(N, (t + 1) * kTaskRows));
  });
  for (int m = 0; m < M; m++) {
    double lo = -INFINITY;
    for (int64_t t = 0; t < tasks; t++) lo = std::max(lo, lo_task[size_t(t * M + m)]);
    const float* Am = A + int64_t(m) * N;
    const float* xm = x + int64_t(m) * K;
    int best = -1;
    float best_logit = 0.0f;
    for (int64_t v = 0; v < N; v++) {
      const double b = xnorm[size_t(m)] * s.slack[size_t(v)] + Bf16ArgmaxSketch::kAbsSlack;
      // Past fp32's range the exact logit could be inf: the plain ops define that result.
      if (!(std::fabs(double(Am[v])) + b < double(FLT_MAX) / 2)) return false;
      if (double(Am[v]) + b < lo - Bf16ArgmaxSketch::kAbsSlack) continue;  // below a row that is surely larger
      const float e = exact_dot(xm, w + v * K, K);
      if (best < 0 || e > best_logit) best = int(v), best_logit = e;
    }
    out[m] = best;
  }
  return true;
}

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
