// NF4 + double quantization against docs/reference/nf4.md: table bits, the midpoint decision rule, packing order, zero
// blocks, the dynamic maps (the held tables vs docs/reference/nf4.md#the-dynamic-8-bit-map), and whole matrices against
// a naive reference.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "core/half.h"
#include "dpo/errors.h"
#include "quant/nf4.h"
#include "quant/nf4_block_quantize.h"

using namespace dpo;

namespace {

// The code table (docs/reference/nf4.md#code-table) as fp32 bit patterns.
const uint32_t kSpecTableHex[16] = {0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f,
                                    0xbdba7871, 0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a,
                                    0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000};
// The midpoints of the decision tree (docs/reference/nf4.md#code-table), as bnb's float literals.
const float kSpecMid[15] = {-0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
                            -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
                            0.1202552504837513f,   0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
                            0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f};

uint32_t bits(float f) { return f32_bits(f); }

int ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = int32_t(0x80000000u - uint32_t(ia));
  if (ib < 0) ib = int32_t(0x80000000u - uint32_t(ib));
  return std::abs(ia - ib);
}

std::vector<float> normal_fp16(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = round_fp16(d(rng));  // the reference quantizes fp16 weights (docs/reference/precision.md)
  return v;
}

// ---- A naive, independent reference of docs/reference/nf4.md (flat blocks, linear scans) ----
struct NaiveNf4 {
  std::vector<uint8_t> codes;  // one per element (n)
  std::vector<float> absmax;  // fp32 first-level
  float offset = 0;
  std::vector<float> absmax2;
  std::vector<uint8_t> q;  // nested codes
  std::vector<float> deq_absmax;
  std::vector<float> deq;  // dequantized weights (storage dtype, fp16)
};

uint8_t naive_code(float x) {  // count of midpoints strictly exceeded
  uint8_t c = 0;
  for (float m : kSpecMid)
    if (x > m) c++;
  return c;
}

uint8_t naive_nearest(const float* code, float x) {  // nearest map entry (ties: first); NaN -> 0
  if (std::isnan(x)) return 0;
  int best = 0;
  for (int i = 1; i < 256; i++)
    if (std::fabs(double(x) - code[i]) < std::fabs(double(x) - code[best])) best = i;
  return uint8_t(best);
}

NaiveNf4 naive_quantize(const std::vector<float>& w) {
  NaiveNf4 r;
  const size_t n = w.size(), blocks = (n + 63) / 64;
  r.codes.resize(n);
  r.absmax.resize(blocks);
  for (size_t b = 0; b < blocks; b++) {
    float mx = 0.0f;
    for (size_t e = b * 64; e < std::min(n, b * 64 + 64); e++) mx = std::max(mx, std::fabs(w[e]));
    r.absmax[b] = mx;
    const float inv = 1.0f / mx;
    for (size_t e = b * 64; e < std::min(n, b * 64 + 64); e++) r.codes[e] = naive_code(w[e] * inv);
  }
  double s = 0;
  for (float a : r.absmax) s += a;
  r.offset = float(s / double(blocks));
  const size_t nested = (blocks + 255) / 256;
  r.absmax2.resize(nested);
  r.q.resize(blocks);
  const float* code8 = dynamic_map_signed();
  for (size_t c = 0; c < nested; c++) {
    float mx = 0.0f;
    for (size_t b = c * 256; b < std::min(blocks, c * 256 + 256); b++)
      mx = std::max(mx, std::fabs(r.absmax[b] - r.offset));
    r.absmax2[c] = mx;
    for (size_t b = c * 256; b < std::min(blocks, c * 256 + 256); b++)
      r.q[b] = naive_nearest(code8, (r.absmax[b] - r.offset) * (1.0f / mx));
  }
  r.deq_absmax.resize(blocks);
  for (size_t b = 0; b < blocks; b++) {
    volatile float p = code8[r.q[b]] * r.absmax2[b / 256];  // separately rounded product, then the add
    r.deq_absmax[b] = p + r.offset;
  }
  r.deq.resize(n);
  for (size_t e = 0; e < n; e++) r.deq[e] = round_fp16(kNf4Table[r.codes[e]] * r.deq_absmax[e / 64]);
  return r;
}

uint8_t packed_code(const Nf4Matrix& m, int64_t e) {
  const uint8_t b = m.packed[size_t(e / 2)];
  return (e % 2 == 0) ? uint8_t(b >> 4) : uint8_t(b & 15);
}

}  // namespace

TEST_CASE(nf4_table_bits_match_spec) {
  for (int i = 0; i < 16; i++) CHECK(bits(kNf4Table[i]) == kSpecTableHex[i]);
}

TEST_CASE(nf4_code_midpoints_ties_go_down) {
  for (int i = 0; i < 15; i++) {
    const float m = kSpecMid[i];
    CHECK(nf4_code(m) == i);  // equal to a midpoint: not exceeded
    CHECK(nf4_code(std::nextafter(m, INFINITY)) == i + 1);  // just above: the next code
    CHECK(nf4_code(std::nextafter(m, -INFINITY)) == i);
  }
  for (int c = 0; c < 16; c++) CHECK(nf4_code(kNf4Table[c]) == c);
  CHECK(nf4_code(NAN) == 0);
  CHECK(nf4_code(-NAN) == 0);
  CHECK(nf4_code(INFINITY) == 15);
  CHECK(nf4_code(-INFINITY) == 0);
  CHECK(nf4_code(0.0f) == 7);
  CHECK(nf4_code(-0.0f) == 7);
  CHECK(nf4_code(2.0f) == 15);
  CHECK(nf4_code(-2.0f) == 0);
}

TEST_CASE(nf4_packing_even_element_is_high_nibble) {
  // One block whose values are exactly 2 * NF4[c_e]: absmax = 2, x = w * 0.5 = NF4[c_e], so code(e) = c_e.
  std::vector<float> w(64);
  std::vector<uint8_t> c(64);
  for (int e = 0; e < 64; e++) {
    c[size_t(e)] = uint8_t((e * 7 + 3) % 16);
    w[size_t(e)] = 2.0f * kNf4Table[c[size_t(e)]];
  }
  const Nf4Matrix m = nf4_quantize(w.data(), 2, 32, Nf4StorageDType::F32);
  CHECK(m.packed.size() == 32);
  for (int k = 0; k < 32; k++) CHECK(m.packed[size_t(k)] == uint8_t((c[size_t(2 * k)] << 4) | c[size_t(2 * k + 1)]));
  CHECK(m.packed[0] == 0x3a);  // e0 -> code 3 (high), e1 -> code 10 (low)
  CHECK(m.blocks() == 1);
  // One block: offset = absmax, a = 0, absmax2 = 0 -> NaN -> code 0 -> -0.99*0 + offset = offset exactly.
  CHECK(m.absmax_offset == 2.0f);
  CHECK(m.absmax.size() == 1 && m.absmax[0] == 2.0f);
  std::vector<float> d(64);
  nf4_dequantize(m, d.data());
  for (int e = 0; e < 64; e++) CHECK(bits(d[size_t(e)]) == bits(w[size_t(e)]));
  CHECK(m.bytes() == 32 + 1 + 4);
}

TEST_CASE(nf4_all_zero_block) {
  // A single all-zero block: absmax 0 -> 1/0 = inf -> 0*inf = NaN -> code 0 -> NF4[0] * (+0) = -0.0.
  std::vector<float> z(64, 0.0f);
  const Nf4Matrix m = nf4_quantize(z.data(), 1, 64);
  for (uint8_t b : m.packed) CHECK(b == 0);
  std::vector<float> d(64, 1.0f);
  nf4_dequantize(m, d.data());
  for (float v : d) CHECK(v == 0.0f && std::signbit(v));

  // Inside a larger matrix the zero block still gets code 0 everywhere (its absmax is not exactly 0 after the
  // double quant, so only the codes are checked).
  std::vector<float> w = normal_fp16(4 * 64, 0.02f, 7);
  for (int e = 64; e < 128; e++) w[size_t(e)] = 0.0f;
  const Nf4Matrix m2 = nf4_quantize(w.data(), 4, 64);
  for (int e = 64; e < 128; e++) CHECK(packed_code(m2, e) == 0);
}

TEST_CASE(nf4_roundtrip_error_within_step) {
  const int64_t N = 96, K = 256;
  const std::vector<float> w = normal_fp16(size_t(N * K), 0.02f, 1);
  const Nf4Matrix m = nf4_quantize(w.data(), N, K);
  std::vector<float> d(size_t(N * K));
  nf4_dequantize(m, d.data());
  double worst_rel = 0.0;
  for (int64_t b = 0; b < m.blocks(); b++) {
    float amax = 0.0f;
    for (int64_t e = b * 64; e < b * 64 + 64; e++) amax = std::max(amax, std::fabs(w[size_t(e)]));
    const float a2 = m.absmax[size_t(b)];
    for (int64_t e = b * 64; e < b * 64 + 64; e++) {
      const int c = packed_code(m, e);
      // the code is the nearest NF4 value to w/absmax: within half the gap to its neighbours
      const float lo = c > 0 ? (kNf4Table[c] - kNf4Table[c - 1]) / 2 : 0.0f;
      const float hi = c < 15 ? (kNf4Table[c + 1] - kNf4Table[c]) / 2 : 0.0f;
      const double x = double(w[size_t(e)]) / amax;
      CHECK(x >= kNf4Table[c] - lo - 1e-6 && x <= kNf4Table[c] + hi + 1e-6);
      // the dequantized value: that rounding error, plus the double-quant absmax error, plus fp16 rounding
      const double err = std::fabs(double(d[size_t(e)]) - w[size_t(e)]);
      const double bound = std::max(lo, hi) * amax + std::fabs(double(a2) - amax) + std::fabs(d[size_t(e)]) * 1e-3;
      CHECK(err <= bound * (1 + 1e-6) + 1e-9);
      worst_rel = std::max(worst_rel, err / amax);
    }
  }
  CHECK(worst_rel < 0.16);  // the largest NF4 half-step is 0.152
  std::printf("  worst |w - deq| / absmax = %.4f\n", worst_rel);
}

TEST_CASE(nf4_double_quant_absmax_within_map_resolution) {
  const int64_t N = 512, K = 128;  // 1024 blocks -> 4 nested blocks
  std::vector<float> w = normal_fp16(size_t(N * K), 0.03f, 2);
  for (int64_t e = 0; e < N * K; e += 997) w[size_t(e)] *= 4.0f;  // spread the absmax values
  const Nf4Matrix m = nf4_quantize(w.data(), N, K);
  CHECK(m.absmax2.size() == 4);
  const float* code8 = dynamic_map_signed();
  double s = 0.0;
  std::vector<float> amax(size_t(m.blocks()));
  for (int64_t b = 0; b < m.blocks(); b++) {
    float mx = 0.0f;
    for (int64_t e = b * 64; e < b * 64 + 64; e++) mx = std::max(mx, std::fabs(w[size_t(e)]));
    amax[size_t(b)] = mx;
    s += mx;
  }
  CHECK(bits(m.absmax_offset) == bits(float(s / double(m.blocks()))));
  for (int64_t b = 0; b < m.blocks(); b++) {
    const int q = m.absmax_q[size_t(b)];
    const float a2 = m.absmax2[size_t(b / 256)];
    const double gap = std::max(q > 0 ? code8[q] - code8[q - 1] : 0.0f, q < 255 ? code8[q + 1] - code8[q] : 0.0f);
    const double err = std::fabs(double(m.absmax[size_t(b)]) - amax[size_t(b)]);
    CHECK(err <= gap / 2 * a2 + 1e-7 * amax[size_t(b)]);
  }
}

TEST_CASE(dynamic_maps_equal_their_construction) {
  float built[256];
  for (int sgn = 0; sgn < 2; sgn++) {
    const float* table = sgn ? dynamic_map_signed() : dynamic_map_unsigned();
    dynamic_map_build(sgn == 1, built);
    int differ = 0, worst = 0;
    for (int i = 0; i < 256; i++) {
      if (bits(built[i]) != bits(table[i])) differ++;
      worst = std::max(worst, ulp_distance(built[i], table[i]));
    }
    std::printf("  %s map: %d of 256 entries differ from the construction (max %d ulp)\n", sgn ? "signed" : "unsigned",
                differ, worst);
    CHECK(differ == 0);
    CHECK(worst <= 1);
    for (int i = 1; i < 256; i++) CHECK(table[i - 1] < table[i]);  // sorted, distinct
  }
  const float* s = dynamic_map_signed();
  CHECK(bits(s[0]) == 0xbf7e3333u);
  CHECK(bits(s[127]) == 0u);
  CHECK(bits(s[255]) == 0x3f800000u);
  for (int i = 0; i < 127; i++) CHECK(bits(s[128 + i]) == (bits(s[126 - i]) ^ 0x80000000u));
  const float* u = dynamic_map_unsigned();
  CHECK(bits(u[0]) == 0u && bits(u[1]) == 0x34ae7baau && bits(u[255]) == 0x3f800000u);
}

TEST_CASE(dynamic_code_roundtrips_and_finds_nearest) {
  for (int sgn = 0; sgn < 2; sgn++) {
    const float* code = sgn ? dynamic_map_signed() : dynamic_map_unsigned();
    for (int i = 0; i < 256; i++) CHECK(dynamic_code(code, code[i]) == i);
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> d(sgn ? -1.0f : 0.0f, 1.0f);
    int mismatches = 0;
    for (int t = 0; t < 20000; t++) {
      // log-uniform magnitudes so the dense small-value region of the map is exercised too
      float x = d(rng);
      if (t % 2) x = std::copysign(std::pow(10.0f, -7.0f * std::fabs(d(rng))), sgn ? x : 1.0f);
      if (dynamic_code(code, x) != naive_nearest(code, x)) mismatches++;
    }
    CHECK(mismatches == 0);
  }
  CHECK(dynamic_code(dynamic_map_signed(), NAN) == 0);
  CHECK(dynamic_code(dynamic_map_signed(), 1.0f) == 255);
  CHECK(dynamic_code(dynamic_map_signed(), -1.0f) == 0);
  CHECK(dynamic_code(dynamic_map_signed(), 0.0f) == 127);
}

TEST_CASE(nf4_rows_not_multiple_of_64_match_naive_reference) {
  // stories260K-like FFN rows (K = 172: blocks cross rows), an odd element count (padding nibble), and a matrix
  // with more than 256 blocks (two nested blocks, the second partial).
  const int64_t shapes[][2] = {{3, 172}, {3, 171}, {1, 1}, {5, 13}, {97, 172}, {7, 4096}};
  uint32_t seed = 11;
  for (auto& sh : shapes) {
    const int64_t N = sh[0], K = sh[1], n = N * K;
    const std::vector<float> w = normal_fp16(size_t(n), 0.05f, seed++);
    const Nf4Matrix m = nf4_quantize(w.data(), N, K);
    const NaiveNf4 r = naive_quantize(w);
    CHECK(int64_t(m.packed.size()) == (n + 1) / 2);
    CHECK(m.blocks() == (n + 63) / 64);
    int bad_codes = 0;
    for (int64_t e = 0; e < n; e++) bad_codes += packed_code(m, e) != r.codes[size_t(e)];
    CHECK(bad_codes == 0);
    if (n % 2) {  // the padding element is 0 * (1/absmax) -> code 7
      CHECK((m.packed.back() & 15) == 7);
    }
    CHECK(bits(m.absmax_offset) == bits(r.offset));
    CHECK(m.absmax2.size() == r.absmax2.size());
    for (size_t c = 0; c < r.absmax2.size(); c++) CHECK(bits(m.absmax2[c]) == bits(r.absmax2[c]));
    int bad_q = 0, bad_a = 0;
    for (size_t b = 0; b < r.q.size(); b++) {
      bad_q += m.absmax_q[b] != r.q[b];
      bad_a += bits(m.absmax[b]) != bits(r.deq_absmax[b]);
    }
    CHECK(bad_q == 0);
    CHECK(bad_a == 0);
    std::vector<float> d(static_cast<size_t>(n)), row(static_cast<size_t>(K));
    nf4_dequantize(m, d.data());
    int bad_d = 0;
    for (int64_t e = 0; e < n; e++) bad_d += bits(d[size_t(e)]) != bits(r.deq[size_t(e)]);
    CHECK(bad_d == 0);
    for (int64_t j = 0; j < N; j++) {
      nf4_dequantize_row(m, j, row.data());
      CHECK(std::memcmp(row.data(), d.data() + j * K, size_t(K) * 4) == 0);
    }
    if (bad_codes || bad_q || bad_a || bad_d)
      std::printf("  shape %lldx%lld: %d codes, %d nested codes, %d absmax, %d weights differ\n", (long long)N,
                  (long long)K, bad_codes, bad_q, bad_a, bad_d);
  }
}

TEST_CASE(nf4_whole_blocks_with_nan_zeros_and_ties_match_naive_reference) {
  // The loader's fast path for whole 64-element blocks must keep the scalar rules: a NaN never becomes the block's
  // absmax and gets code 0, -0 gets code 7, a value exactly on a midpoint goes down.
  std::vector<float> w = normal_fp16(64 * 8, 0.05f, 77);
  w[3] = NAN;
  // A NaN must lose wherever it sits: a block's first and last elements, and the first of its last 16.
  w[64 * 5 + 63] = NAN;
  w[64 * 6] = NAN;
  w[64 * 7 + 48] = NAN;
  w[64 + 5] = -0.0f;
  for (int i = 0; i < 64; i++) w[size_t(128 + i)] = 0.0f;  // an all-zero block
  w[192] = 1.0f;  // block 3: absmax 1, so values are their own x
  w[193] = 0.03979014977812767f;  // exactly the midpoint between codes 7 and 8
  w[194] = -0.8480964004993439f;  // exactly the first midpoint
  const Nf4Matrix m = nf4_quantize(w.data(), 8, 64);
  const NaiveNf4 r = naive_quantize(w);
  int bad = 0;
  for (size_t e = 0; e < w.size(); e++) bad += packed_code(m, int64_t(e)) != r.codes[e];
  CHECK(bad == 0);
  CHECK(packed_code(m, 3) == 0);
  CHECK(packed_code(m, 193) == 7);
  CHECK(packed_code(m, 194) == 0);
  for (size_t b = 0; b < r.q.size(); b++) CHECK(m.absmax_q[b] == r.q[b]);
}

TEST_CASE(nf4_streamed_equals_whole_matrix) {
  // The loader quantizes from chunks of 1024 blocks: more than one chunk with a partial last one, blocks crossing
  // rows (K = 172), an odd element count, a single partial block, and a NaN and a zero block at a chunk's edge.
  const int64_t shapes[][2] = {{1, 1}, {3, 171}, {97, 172}, {1100, 64}, {33, 4096}, {4097, 33}};
  uint32_t seed = 41;
  for (auto& sh : shapes) {
    const int64_t N = sh[0], K = sh[1], n = N * K;
    std::vector<float> w = normal_fp16(size_t(n), 0.05f, seed++);
    if (n > 1024 * 64 + 64) {
      w[size_t(1024 * 64 - 1)] = NAN;
      for (int i = 0; i < 64; i++) w[size_t(1024 * 64 + i)] = 0.0f;
    }
    const Nf4Matrix whole = nf4_quantize(w.data(), N, K, Nf4StorageDType::BF16);
    int64_t next = 0, calls = 0;
    bool in_order = true;
    const Nf4Matrix streamed =
        nf4_quantize_streamed(N, K, Nf4StorageDType::BF16, [&](int64_t e0, int64_t e1, float* out) {
          in_order = in_order && e0 == next && e1 > e0 && e1 <= n;
          next = e1, calls++;
          std::memcpy(out, w.data() + e0, size_t(e1 - e0) * sizeof(float));
        });
    CHECK(in_order && next == n);
    CHECK(calls == (whole.blocks() + 1023) / 1024);
    CHECK(streamed.dtype == Nf4StorageDType::BF16 && streamed.rows == N && streamed.cols == K);
    CHECK(streamed.packed == whole.packed);
    CHECK(streamed.absmax_q == whole.absmax_q);
    CHECK(std::memcmp(streamed.absmax2.data(), whole.absmax2.data(), whole.absmax2.size() * 4) == 0);
    CHECK(bits(streamed.absmax_offset) == bits(whole.absmax_offset));
    CHECK(std::memcmp(streamed.absmax.data(), whole.absmax.data(), whole.absmax.size() * 4) == 0);
    CHECK(streamed.bf16_dot_exact == whole.bf16_dot_exact && streamed.fp16_table_normal == whole.fp16_table_normal);
  }
}

// Blocks where the forms of the whole-block quantizer could part: a NaN at each of the 64 positions, all zero, all
// -0, all NaN, an inf, values on the midpoints and one ulp either side, subnormals, values near FLT_MAX, and random
// blocks at scales from 1e-30 to 1e30.
std::vector<float> awkward_blocks() {
  std::vector<float> w;
  auto block = [&](const std::vector<float>& b) { w.insert(w.end(), b.begin(), b.end()); };
  for (int k = 0; k < 64; k++) {
    std::vector<float> b = normal_fp16(64, 0.05f, uint32_t(500 + k));
    b[size_t(k)] = NAN;
    block(b);
  }
  block(std::vector<float>(64, 0.0f));
  block(std::vector<float>(64, -0.0f));
  block(std::vector<float>(64, NAN));
  std::vector<float> with_inf = normal_fp16(64, 1.0f, 600);
  with_inf[17] = -INFINITY;
  block(with_inf);
  std::vector<float> ties(64, 0.0f);
  ties[0] = 1.0f;
  for (int i = 0; i < 15; i++) {
    ties[size_t(1 + 3 * i)] = kSpecMid[i];
    ties[size_t(2 + 3 * i)] = std::nextafter(kSpecMid[i], 2.0f);
    ties[size_t(3 + 3 * i)] = std::nextafter(kSpecMid[i], -2.0f);
  }
  block(ties);
  std::vector<float> tiny(64), huge(64);
  for (int i = 0; i < 64; i++) {
    tiny[size_t(i)] = float(i - 32) * 1e-40f;
    huge[size_t(i)] = float(i - 32) * 1e37f;
  }
  block(tiny);
  block(huge);
  std::mt19937 g(7);
  for (int r = 0; r < 200; r++) {
    std::vector<float> b = normal_fp16(64, 1.0f, uint32_t(700 + r));
    const float scale = std::pow(10.0f, float(int(g() % 61) - 30));
    for (float& v : b) v *= scale;
    block(b);
  }
  return w;
}

TEST_CASE(nf4_block_forms_give_the_same_absmax_and_bytes) {
  // Every form of the whole-block quantizer that this CPU runs (nf4_block_quantize.h) against the portable one, bit
  // for bit, and through nf4_quantize against the naive reference on normal weights.
  const Nf4BlockIsa widest = nf4_block_isa();
  const std::vector<float> w = awkward_blocks();
  const size_t blocks = w.size() / 64;
  CHECK(set_nf4_block_isa(Nf4BlockIsa::Portable));
  std::vector<float> want_absmax(blocks);
  std::vector<uint8_t> want_bytes(blocks * 32);
  for (size_t b = 0; b < blocks; b++) want_absmax[b] = nf4_quantize_whole_block(w.data() + 64 * b, &want_bytes[32 * b]);
  CHECK(bits(want_absmax[65]) == 0 && bits(want_absmax[66]) == bits(-FLT_MAX));  // all -0: +0; all NaN: the start
  int forms = 0;
  for (Nf4BlockIsa isa : {Nf4BlockIsa::Portable, Nf4BlockIsa::Avx2}) {
    if (!set_nf4_block_isa(isa)) continue;
    forms++;
    int bad_absmax = 0, bad_bytes = 0;
    for (size_t b = 0; b < blocks; b++) {
      uint8_t bytes[32];
      bad_absmax += bits(nf4_quantize_whole_block(w.data() + 64 * b, bytes)) != bits(want_absmax[b]);
      bad_bytes += std::memcmp(bytes, &want_bytes[32 * b], 32) != 0;
    }
    CHECK(bad_absmax == 0);
    CHECK(bad_bytes == 0);
    const std::vector<float> normal = normal_fp16(97 * 192, 0.05f, 31);
    const Nf4Matrix m = nf4_quantize(normal.data(), 97, 192);
    const NaiveNf4 r = naive_quantize(normal);
    int bad_codes = 0;
    for (int64_t e = 0; e < int64_t(normal.size()); e++) bad_codes += packed_code(m, e) != r.codes[size_t(e)];
    CHECK(bad_codes == 0);
    if (bad_absmax || bad_bytes || bad_codes)
      std::printf("  form %d: %d absmax, %d blocks' bytes, %d codes differ\n", int(isa), bad_absmax, bad_bytes,
                  bad_codes);
  }
  std::printf("  %d forms of the block quantizer run here\n", forms);
  CHECK(set_nf4_block_isa(widest));
}

TEST_CASE(round_fp16_inplace_equals_the_scalar_rounding) {
  std::mt19937 g(5);
  std::vector<float> x;
  for (int i = 0; i < 1 << 20; i++) x.push_back(bits_f32(g()));  // every exponent, subnormals, inf, NaN
  for (float v : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 1e-10f, INFINITY,
                  -INFINITY, NAN})
    x.push_back(v);
  std::vector<float> y = x;
  round_fp16_inplace(y.data(), int64_t(y.size()));
  int bad = 0;
  for (size_t i = 0; i < x.size(); i++) {
    const float want = round_fp16(x[i]);
    bad += std::isnan(want) ? !std::isnan(y[i]) : bits(y[i]) != bits(want);
  }
  CHECK(bad == 0);
}

TEST_CASE(nf4_storage_dtypes_round_the_product) {
  const int64_t N = 4, K = 64;
  const std::vector<float> w = normal_fp16(size_t(N * K), 0.3f, 3);
  for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
    const Nf4Matrix m = nf4_quantize(w.data(), N, K, dt);
    std::vector<float> d(size_t(N * K));
    nf4_dequantize(m, d.data());
    for (int64_t e = 0; e < N * K; e++) {
      const float p = kNf4Table[packed_code(m, e)] * m.absmax[size_t(e / 64)];
      const float want = dt == Nf4StorageDType::F16 ? round_fp16(p) : dt == Nf4StorageDType::BF16 ? round_bf16(p) : p;
      CHECK(bits(d[size_t(e)]) == bits(want));
    }
  }
}

TEST_CASE(nf4_from_parts_and_nested_code_override) {
  const int64_t N = 40, K = 172;  // 108 blocks, one partial nested block
  const std::vector<float> w = normal_fp16(size_t(N * K), 0.05f, 4);
  const Nf4Matrix m = nf4_quantize(w.data(), N, K);
  // The built-in map given explicitly is dropped (same bits); the cache is identical.
  const Nf4Matrix a = nf4_from_parts(N, K, m.packed, m.absmax_q, m.absmax2, m.absmax_offset, dynamic_map_signed(),
                                     Nf4StorageDType::F16);
  CHECK(a.nested_code.empty());
  CHECK(a.absmax.size() == m.absmax.size());
  CHECK(std::memcmp(a.absmax.data(), m.absmax.data(), m.absmax.size() * 4) == 0);
  CHECK(a.bytes() == m.bytes());
  CHECK(m.bytes() == m.packed.size() + m.absmax_q.size() + 4 * m.absmax2.size());
  // A checkpoint map differing by 1 ulp in one entry is kept and used.
  std::vector<float> code(dynamic_map_signed(), dynamic_map_signed() + 256);
  const int q0 = m.absmax_q[0];
  code[size_t(q0)] = std::nextafter(code[size_t(q0)], 2.0f);
  const Nf4Matrix b =
      nf4_from_parts(N, K, m.packed, m.absmax_q, m.absmax2, m.absmax_offset, code.data(), Nf4StorageDType::F16);
  CHECK(b.nested_code.size() == 256);
  volatile float p = code[size_t(q0)] * m.absmax2[0];
  CHECK(bits(b.absmax[0]) == bits(p + m.absmax_offset));
  std::vector<float> again(size_t(b.blocks()));
  nf4_dequantize_absmax(b, again.data());
  CHECK(std::memcmp(again.data(), b.absmax.data(), again.size() * 4) == 0);
  // Wrong part sizes are a bad model.
  CHECK_THROWS_CODE(
      nf4_from_parts(N, K + 2, m.packed, m.absmax_q, m.absmax2, m.absmax_offset, nullptr, Nf4StorageDType::F16),
      ErrorCode::BadModel, "packed");
  CHECK_THROWS_CODE(nf4_from_parts(N, K, m.packed, std::vector<uint8_t>(3), m.absmax2, m.absmax_offset, nullptr,
                                   Nf4StorageDType::F16),
                    ErrorCode::BadModel, "absmax");
}

TEST_MAIN()
