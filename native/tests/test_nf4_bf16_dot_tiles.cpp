// The tiled NF4 matmuls' bf16-dot tiles (src/cpu/nf4_tiles_bf16dot.cpp, docs/cpu-kernels.md#bf16-dot-tiles): the
// same bits as the fp32 tiles, forward and input gradient, for prefill and training shapes (one chunk of K and
// several, ragged tile edges, bias or none, every storage dtype, 1 and 2 threads, several matrices in one call,
// accumulating or overwriting gradients); matrices and inputs outside the exact range take the fp32 tiles; the
// preference switch decides between the two.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "op_checks.h"
#include "random_data.h"
#include "core/half.h"
#include "cpu/matmul_nf4_gemv.h"
#include "cpu/nf4_bf16_dot_switch.h"
#include "cpu/nf4_product.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "quant/nf4.h"

using namespace dpo;
using namespace dpo_test;
using std::vector;

namespace {

// Whether the bf16-dot tiles run here when preferred: a CPU with the instructions, on the AVX-512 kernel set.
bool runs_bf16_dot() { return cpu::nf4_bf16_dot_usable() && std::string(cpu::matmul_kernel_set()) == "avx512"; }

Nf4Matrix quantized(int N, int K, float sigma, Nf4StorageDType dt, uint32_t seed) {
  auto wf = randn(size_t(N) * K, sigma, seed);
  if (dt == Nf4StorageDType::F16)
    for (auto& v : wf) v = round_fp16(v);
  return nf4_quantize(wf.data(), N, K, dt);
}

// The outputs of one matmul_nf4_forward_many call over `ws` (same x), with the bf16-dot kernels preferred or not.
vector<vector<float>> forward_many(bool prefer, const vector<const Nf4Matrix*>& ws, const vector<const float*>& bias,
                                   const vector<float>& x, int M) {
  cpu::set_nf4_bf16_dot_preference(prefer ? 1 : 0);
  vector<vector<float>> outs;
  vector<cpu::Nf4Product> products;
  for (const Nf4Matrix* w : ws) outs.emplace_back(size_t(M) * size_t(w->rows), NAN);
  for (size_t i = 0; i < ws.size(); i++) products.push_back({outs[i].data(), ws[i], bias[i]});
  cpu::matmul_nf4_forward_many(products.data(), int(products.size()), x.data(), M);
  cpu::set_nf4_bf16_dot_preference(-1);
  return outs;
}

// check(M, K, N, w, seed) for every (M, K, N) shape, storage dtype and thread count (1, 2), w a fresh random
// matrix; `seed` moves on for the check's own data.
template <class Check>
void for_each_case(const vector<std::array<int, 3>>& shapes, uint32_t seed, const Check& check) {
  for (int threads : {1, 2}) {
    set_cpu_thread_count(threads);
    for (auto& s : shapes)
      for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
        const Nf4Matrix w = quantized(s[2], s[1], 0.05f, dt, seed++);
        check(s[0], s[1], s[2], w, seed);
      }
  }
  set_cpu_thread_count(0);
}

}  // namespace

TEST_CASE(bf16_dot_tiles_equal_fp32_tiles_bit_for_bit) {
  // K = 1600 and 4864 run in chunks of K (parked lane sums); M = 9 is the smallest tiled call, 203 spans two row
  // blocks of the chunked path; N = 1 and 37 leave 1-wide edge tiles.
  const uint64_t calls0 = cpu::nf4_bf16_dot_tile_calls();
  int64_t compared = 0;
  for_each_case({{9, 64, 37}, {13, 192, 1}, {64, 896, 130}, {203, 1600, 21}, {40, 4864, 9}}, 9100,
                [&](int M, int K, int N, const Nf4Matrix& w, uint32_t& seed) {
                  CHECK(w.bf16_dot_exact);
                  const auto x = randu(size_t(M) * K, -40, 40, seed++), bias = randu(size_t(N), -1, 1, seed++);
                  for (const float* b : {bias.data(), static_cast<const float*>(nullptr)}) {
                    CHECK(same_bits(forward_many(true, {&w}, {b}, x, M)[0], forward_many(false, {&w}, {b}, x, M)[0]));
                    compared++;
                  }
                });
  if (runs_bf16_dot()) CHECK(cpu::nf4_bf16_dot_tile_calls() - calls0 == uint64_t(compared));
  else CHECK(cpu::nf4_bf16_dot_tile_calls() == calls0);
}

TEST_CASE(matrices_outside_the_range_take_the_fp32_tiles_in_the_same_call) {
  // q, k and v of one input: k with tiny scales (its products could leave fp32's normal range) runs on the fp32
  // tiles, the others on the bf16-dot tiles; every output has the fp32 tiles' bits.
  const int M = 24, K = 256;
  const Nf4Matrix q = quantized(40, K, 0.05f, Nf4StorageDType::F16, 9200);
  auto tiny = randn(size_t(8) * K, 0.05f, 9201);
  for (auto& v : tiny) v *= 1e-16f;
  const Nf4Matrix k = nf4_quantize(tiny.data(), 8, K, Nf4StorageDType::F32);
  const Nf4Matrix v = quantized(8, K, 0.05f, Nf4StorageDType::BF16, 9202);
  CHECK(!k.bf16_dot_exact && q.bf16_dot_exact && v.bf16_dot_exact);
  const auto x = randu(size_t(M) * K, -3, 3, 9203), bias = randu(40, -1, 1, 9204);
  const uint64_t calls0 = cpu::nf4_bf16_dot_tile_calls();
  const auto fast = forward_many(true, {&q, &k, &v}, {bias.data(), nullptr, bias.data()}, x, M);
  if (runs_bf16_dot()) CHECK(cpu::nf4_bf16_dot_tile_calls() - calls0 == 2);
  const auto plain = forward_many(false, {&q, &k, &v}, {bias.data(), nullptr, bias.data()}, x, M);
  for (int i = 0; i < 3; i++) CHECK(same_bits(fast[size_t(i)], plain[size_t(i)]));
}

TEST_CASE(inputs_outside_the_range_take_the_fp32_tiles) {
  // One x value whose products could be subnormal (vdpbf16ps flushes them), or inf / NaN / huge: the whole call
  // takes the fp32 tiles, with their bits (NaN payloads included).
  const int M = 12, K = 128, N = 10;
  const Nf4Matrix w = quantized(N, K, 0.05f, Nf4StorageDType::F16, 9300);
  const float inf = std::numeric_limits<float>::infinity();
  for (float odd : {1e-20f, -3e-16f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 3e19f}) {
    auto x = randu(size_t(M) * K, -2, 2, 9301);
    x[size_t(7 * K + 33)] = odd;
    const uint64_t calls0 = cpu::nf4_bf16_dot_tile_calls();
    const auto fast = forward_many(true, {&w}, {nullptr}, x, M);
    CHECK(cpu::nf4_bf16_dot_tile_calls() == calls0);
    CHECK(same_bits(fast[0], forward_many(false, {&w}, {nullptr}, x, M)[0]));
  }
  // The edges of the range and zeros of both signs stay on the bf16-dot tiles.
  auto x = randu(size_t(M) * K, -2, 2, 9302);
  x[0] = std::ldexp(1.0f, -50), x[1] = -std::ldexp(1.0f, 60), x[2] = 0.0f, x[3] = -0.0f;
  const uint64_t calls0 = cpu::nf4_bf16_dot_tile_calls();
  const auto fast = forward_many(true, {&w}, {nullptr}, x, M);
  CHECK(cpu::nf4_bf16_dot_tile_calls() - calls0 == (runs_bf16_dot() ? 1u : 0u));
  CHECK(same_bits(fast[0], forward_many(false, {&w}, {nullptr}, x, M)[0]));
}

namespace {

// dx after matmul_nf4_backward_input into a copy of dx0 (accumulating) or over it, bf16-dot kernels preferred or not.
vector<float> backward_input(bool prefer, const vector<float>& dx0, const vector<float>& dout, const Nf4Matrix& w,
                             int M, bool overwrite) {
  cpu::set_nf4_bf16_dot_preference(prefer ? 1 : 0);
  vector<float> dx = dx0;
  cpu::matmul_nf4_backward_input(dx.data(), dout.data(), w, M, overwrite);
  cpu::set_nf4_bf16_dot_preference(-1);
  return dx;
}

}  // namespace

TEST_CASE(bf16_dot_input_gradient_equals_fp32_tiles_bit_for_bit) {
  // (M, K, N): 9 rows; a training micro-batch's 160 rows; 300 rows in two row blocks; N = 130 and 1154 end in a
  // partial chunk of 128 weight rows; K = 4864 is the 0.42B down projection's input. N odd takes the fp32 tiles.
  const uint64_t calls0 = cpu::nf4_bf16_dot_tile_calls();
  uint64_t expected = 0;
  for_each_case({{9, 64, 2}, {160, 896, 130}, {300, 192, 1154}, {21, 4864, 36}, {12, 128, 7}}, 9500,
                [&](int M, int K, int N, const Nf4Matrix& w, uint32_t& seed) {
                  const auto dout = randu(size_t(M) * N, -1e-3f, 1e-3f, seed++);
                  const auto dx0 = randu(size_t(M) * K, -1, 1, seed++);
                  for (bool overwrite : {false, true}) {
                    CHECK(same_bits(backward_input(true, dx0, dout, w, M, overwrite),
                                    backward_input(false, dx0, dout, w, M, overwrite)));
                    if (N % 2 == 0) expected++;
                  }
                });
  CHECK(cpu::nf4_bf16_dot_tile_calls() - calls0 == (runs_bf16_dot() ? expected : 0));
}

TEST_CASE(input_gradients_outside_the_range_take_the_fp32_tiles) {
  // An output gradient whose products could be subnormal (a vanishing gradient: 1e-20), or inf / NaN: fp32 tiles.
  const int M = 16, K = 128, N = 12;
  const Nf4Matrix w = quantized(N, K, 0.05f, Nf4StorageDType::BF16, 9600);
  const float inf = std::numeric_limits<float>::infinity();
  for (float odd : {1e-20f, inf, std::numeric_limits<float>::quiet_NaN()}) {
    auto dout = randu(size_t(M) * N, -1, 1, 9601);
    dout[size_t(5 * N + 3)] = odd;
    const auto dx0 = randu(size_t(M) * K, -1, 1, 9602);
    const uint64_t calls0 = cpu::nf4_bf16_dot_tile_calls();
    const auto fast = backward_input(true, dx0, dout, w, M, false);
    CHECK(cpu::nf4_bf16_dot_tile_calls() == calls0);
    CHECK(same_bits(fast, backward_input(false, dx0, dout, w, M, false)));
  }
}

TEST_CASE(preference_switch_and_measured_rate) {
  // Forced off, nothing prefers the bf16-dot kernels; forced on, they are preferred wherever they run. Unforced, the
  // measured choice (printed: it depends on the core, Zen 4 yes, Sapphire Rapids no) is stable within a process.
  cpu::set_nf4_bf16_dot_preference(0);
  CHECK(!cpu::nf4_bf16_dot_preferred());
  cpu::set_nf4_bf16_dot_preference(1);
  CHECK(cpu::nf4_bf16_dot_preferred() == cpu::nf4_bf16_dot_usable());
  cpu::set_nf4_bf16_dot_preference(-1);
  const bool measured = cpu::nf4_bf16_dot_preferred();
  CHECK(measured == cpu::nf4_bf16_dot_preferred());
  CHECK(!measured || cpu::nf4_bf16_dot_usable());
  std::printf("bf16-dot kernels preferred on this core: %s\n", measured ? "yes" : "no");
}

TEST_MAIN()
