// Whether the bf16-dot kernels are the faster choice on this core (docs/cpu-kernels.md#bf16-dot-tiles). Both paths
// give the same bits; what differs between cores is vdpbf16ps's rate: on AMD Zen 4 it issues as often as
// vfmadd231ps (two products per lane instead of one), on Intel Sapphire Rapids about a quarter as often. So the
// engine times both instructions once, in register-only loops, instead of naming CPU models.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "bf16_dot_words.h"
#include "kernel_set.h"
#include "matmul_nf4_gemv.h"
#include "nf4_bf16_dot_switch.h"

namespace dpo::cpu {
inline namespace DPO_KERNEL_NS {

#if defined(DPO_HAVE_BF16_DOT_WORDS)
namespace {

// Seconds for 12 independent chains of 256 instructions each: vdpbf16ps when kDot, else vfmadd231ps. The empty asm
// statements keep the chains apart (a compiler would otherwise merge twelve identical chains into one and time
// latency) and alive.
template <bool kDot>
DPO_BF16_DOT_TARGET double chains_seconds() {
  constexpr int kChains = 12, kSteps = 256;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; c++) {
    acc[c] = _mm512_set1_ps(float(c));
    __asm__ volatile("" : "+v"(acc[c]));
  }
  __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(0.5f);
  const __m512bh xw = as_bf16_words(_mm512_set1_epi16(0x3f80)), yw = as_bf16_words(_mm512_set1_epi16(0x3f00));
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < kSteps; s++) {
    __asm__ volatile("" : "+v"(x));
#pragma GCC unroll 12
    for (int c = 0; c < kChains; c++) acc[c] = kDot ? _mm512_dpbf16_ps(acc[c], xw, yw) : _mm512_fmadd_ps(x, y, acc[c]);
  }
  for (int c = 0; c < kChains; c++) __asm__ volatile("" : : "v"(acc[c]));
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// vdpbf16ps's time per instruction over vfmadd231ps's, once per process: the fastest of 40 interleaved runs of each
// loop (a few microseconds each). Interruptions only slow a run, so the minima are the instructions' own rates even
// on a loaded machine.
double dot_time_per_fma_time() {
  static const double ratio = [] {
    double dot = 1e9, fma = 1e9;
    for (int r = 0; r < 40; r++) {
      fma = std::min(fma, chains_seconds<false>());
      dot = std::min(dot, chains_seconds<true>());
    }
    return dot / fma;
  }();
  return ratio;
}

// One vdpbf16ps does two of a lane's products, so it wins where it takes under twice an FMA's time; the threshold 1.5
// sits between Zen 4 (1.0) and Sapphire Rapids (about 4).
constexpr double kPreferBelow = 1.5;

}  // namespace

bool nf4_bf16_dot_preferred() {
  if (!nf4_bf16_dot_allowed() || !nf4_bf16_dot_usable()) return false;
  const int forced = nf4_bf16_dot_preference();
  if (forced >= 0) return forced == 1;
  return dot_time_per_fma_time() <= kPreferBelow;
}

std::string nf4_products_summary() {
  if (!nf4_bf16_dot_allowed()) return "FMAs (bf16 dot products turned off by DPO_CPU_BF16_DOT=0)";
  if (!nf4_bf16_dot_usable()) return "FMAs (no AVX512-BF16 and VBMI here, or their start-up probe differed)";
  char rate[96];
  std::snprintf(rate, sizeof rate, "vdpbf16ps at %.1fx an FMA's time%s", dot_time_per_fma_time(),
                nf4_bf16_dot_preference() >= 0 ? ", chosen by DPO_CPU_BF16_DOT_PREFER" : "");
  return std::string(nf4_bf16_dot_preferred() ? "bf16 dot products (" : "FMA tiles (") + rate + ")";
}
#else
bool nf4_bf16_dot_preferred() { return false; }
std::string nf4_products_summary() { return "FMAs"; }
#endif

}  // namespace DPO_KERNEL_NS
}  // namespace dpo::cpu
