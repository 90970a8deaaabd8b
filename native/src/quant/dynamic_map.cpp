// The 8-bit "dynamic" maps of bitsandbytes' create_dynamic_map (docs/reference/nf4.md#the-dynamic-8-bit-map) and the
// dQuantize<0> nearest-code search (docs/reference/nf4.md#double-quantisation). Used by NF4 double quantization (signed
// map) and by the 8-bit optimizer state.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/fp_strict.h"
#include "nf4.h"

namespace dpo {
namespace {

// The signed map on torch's scalar linspace path (docs/reference/nf4.md#the-dynamic-8-bit-map), entries
// 0..127 as fp32 bit patterns; 128..254 are the negatives of 126..0, 255 = 1.0.
const uint32_t kSignedBits[128] = {
    0xbf7e3333u, 0xbf7a999au, 0xbf770000u, 0xbf736666u, 0xbf6fcccdu, 0xbf6c3333u, 0xbf68999au, 0xbf650000u, 0xbf616666u,
    0xbf5dcccdu, 0xbf5a3333u, 0xbf56999au, 0xbf530000u, 0xbf4f6666u, 0xbf4bcccdu, 0xbf483333u, 0xbf44999au, 0xbf410000u,
    0xbf3d6667u, 0xbf39cccdu, 0xbf363333u, 0xbf32999au, 0xbf2f0000u, 0xbf2b6667u, 0xbf27cccdu, 0xbf243333u, 0xbf20999au,
    0xbf1d0000u, 0xbf196667u, 0xbf15cccdu, 0xbf123333u, 0xbf0e999au, 0xbf0b0000u, 0xbf076666u, 0xbf03cccdu, 0xbf003333u,
    0xbef93332u, 0xbef20000u, 0xbeeaccccu, 0xbee39999u, 0xbedc6666u, 0xbed53332u, 0xbece0000u, 0xbec6ccccu, 0xbebf999au,
    0xbeb86666u, 0xbeb13332u, 0xbeaa0000u, 0xbea2ccccu, 0xbe9b999au, 0xbe946666u, 0xbe8d3333u, 0xbe860000u, 0xbe7d9999u,
    0xbe6f3333u, 0xbe60cccdu, 0xbe526666u, 0xbe440000u, 0xbe359999u, 0xbe273333u, 0xbe18cccdu, 0xbe0a6666u, 0xbdf80000u,
    0xbddb3334u, 0xbdc9eb85u, 0xbdc428f7u, 0xbdbe6667u, 0xbdb8a3d7u, 0xbdb2e148u, 0xbdad1eb8u, 0xbda75c2au, 0xbda1999au,
    0xbd9bd70bu, 0xbd96147bu, 0xbd9051ebu, 0xbd8a8f5du, 0xbd84cccdu, 0xbd7e147bu, 0xbd728f5du, 0xbd670a3du, 0xbd5b8520u,
    0xbd500000u, 0xbd447ae1u, 0xbd38f5c2u, 0xbd2d70a3u, 0xbd21eb85u, 0xbd166667u, 0xbd0ae147u, 0xbcfeb852u, 0xbce7ae13u,
    0xbcd0a3d7u, 0xbcb9999au, 0xbca28f5cu, 0xbc8b851fu, 0xbc68f5c3u, 0xbc3ae148u, 0xbc1f3b64u, 0xbc160418u, 0xbc0ccccdu,
    0xbc039581u, 0xbbf4bc6au, 0xbbe24dd3u, 0xbbcfdf3cu, 0xbbbd70a4u, 0xbbab020du, 0xbb989374u, 0xbb8624ddu, 0xbb676c8au,
    0xbb428f5cu, 0xbb1db22du, 0xbaf1a9fcu, 0xbaa7ef9du, 0xba7765ffu, 0xba59e83eu, 0xba3c6a80u, 0xba1eecc1u, 0xba016f00u,
    0xb9c7e282u, 0xb98ce705u, 0xb923d70bu, 0xb8ba1f4bu, 0xb88aefb3u, 0xb8378034u, 0xb7b24206u, 0xb70205ffu, 0xb65a1a94u,
    0xb513a3b7u, 0x00000000u};

// The unsigned map on the same path (all 256 entries).
const uint32_t kUnsignedBits[256] = {
    0x00000000u, 0x34ae7baau, 0x35500998u, 0x360e9b38u, 0x3692ccf6u, 0x36de4c51u, 0x3714e5d5u, 0x3783126eu, 0x37e171a0u,
    0x381fe867u, 0x384f1800u, 0x387e479au, 0x3896bb99u, 0x38ae5364u, 0x38c5eb31u, 0x3906594bu, 0x394154cau, 0x397c5048u,
    0x399ba5e4u, 0x39b923a2u, 0x39d6a162u, 0x39f41f22u, 0x3a08ce71u, 0x3a178d50u, 0x3a264c31u, 0x3a350b10u, 0x3a43c9efu,
    0x3a5288d0u, 0x3a6147afu, 0x3a70068eu, 0x3a7ec56eu, 0x3a958106u, 0x3aba5e35u, 0x3adf3b64u, 0x3b020c49u, 0x3b147ae1u,
    0x3b26e978u, 0x3b39580fu, 0x3b4bc6a7u, 0x3b5e353eu, 0x3b70a3d7u, 0x3b818937u, 0x3b8ac082u, 0x3b93f7ceu, 0x3b9d2f1au,
    0x3ba66666u, 0x3baf9db3u, 0x3bb8d4fdu, 0x3bc20c4au, 0x3bcb4395u, 0x3bd47ae1u, 0x3bddb22eu, 0x3be6e978u, 0x3bf020c5u,
    0x3bf95810u, 0x3c0147aeu, 0x3c05e354u, 0x3c0a7ef9u, 0x3c0f1aa0u, 0x3c13b645u, 0x3c1851ebu, 0x3c1ced92u, 0x3c218937u,
    0x3c2f5c2au, 0x3c466667u, 0x3c5d70a3u, 0x3c747ae2u, 0x3c85c28fu, 0x3c9147aeu, 0x3c9ccccdu, 0x3ca851ebu, 0x3cb3d70bu,
    0x3cbf5c29u, 0x3ccae147u, 0x3cd66667u, 0x3ce1eb85u, 0x3ced70a3u, 0x3cf8f5c3u, 0x3d023d70u, 0x3d080000u, 0x3d0dc28fu,
    0x3d13851fu, 0x3d1947afu, 0x3d1f0a3du, 0x3d24cccdu, 0x3d2a8f5bu, 0x3d3051ebu, 0x3d36147bu, 0x3d3bd70au, 0x3d41999au,
    0x3d475c28u, 0x3d4d1eb8u, 0x3d52e148u, 0x3d58a3d7u, 0x3d5e6667u, 0x3d6428f7u, 0x3d69eb85u, 0x3d6fae15u, 0x3d7570a5u,
    0x3d7b3333u, 0x3d807ae2u, 0x3d835c29u, 0x3d863d71u, 0x3d891eb9u, 0x3d8c0000u, 0x3d8ee148u, 0x3d91c28fu, 0x3d94a3d7u,
    0x3d97851fu, 0x3d9a6667u, 0x3d9d47afu, 0x3da028f6u, 0x3da30a3eu, 0x3da5eb85u, 0x3da8cccdu, 0x3dabae15u, 0x3dae8f5cu,
    0x3db170a4u, 0x3db451ebu, 0x3db73333u, 0x3dba147bu, 0x3dbcf5c3u, 0x3dbfd70bu, 0x3dc2b852u, 0x3dc5999au, 0x3dc87ae2u,
    0x3dcb5c29u, 0x3dd40000u, 0x3de26666u, 0x3df0cccdu, 0x3dff3333u, 0x3e06ccccu, 0x3e0e0000u, 0x3e153334u, 0x3e1c6666u,
    0x3e23999au, 0x3e2accccu, 0x3e320000u, 0x3e393333u, 0x3e406666u, 0x3e47999au, 0x3e4eccccu, 0x3e560000u, 0x3e5d3333u,
    0x3e646666u, 0x3e6b999au, 0x3e72cccdu, 0x3e7a0000u, 0x3e80999au, 0x3e843333u, 0x3e87ccccu, 0x3e8b6666u, 0x3e8f0000u,
    0x3e92999au, 0x3e963333u, 0x3e99ccccu, 0x3e9d6666u, 0x3ea10000u, 0x3ea4999au, 0x3ea83333u, 0x3eabccccu, 0x3eaf6666u,
    0x3eb30000u, 0x3eb69999u, 0x3eba3333u, 0x3ebdccccu, 0x3ec16666u, 0x3ec50000u, 0x3ec89999u, 0x3ecc3333u, 0x3ecfccccu,
    0x3ed36666u, 0x3ed70000u, 0x3eda9999u, 0x3ede3332u, 0x3ee1ccccu, 0x3ee56666u, 0x3ee90000u, 0x3eec9999u, 0x3ef03332u,
    0x3ef3ccccu, 0x3ef76666u, 0x3efb0000u, 0x3efe9999u, 0x3f01199au, 0x3f02e666u, 0x3f04b334u, 0x3f068000u, 0x3f084cccu,
    0x3f0a199au, 0x3f0be666u, 0x3f0db334u, 0x3f0f8000u, 0x3f114ccdu, 0x3f13199au, 0x3f14e666u, 0x3f16b334u, 0x3f188000u,
    0x3f1a4ccdu, 0x3f1c199au, 0x3f1de666u, 0x3f1fb334u, 0x3f218000u, 0x3f234ccdu, 0x3f25199au, 0x3f26e666u, 0x3f28b334u,
    0x3f2a8000u, 0x3f2c4ccdu, 0x3f2e199au, 0x3f2fe666u, 0x3f31b334u, 0x3f338000u, 0x3f354ccdu, 0x3f37199au, 0x3f38e666u,
    0x3f3ab334u, 0x3f3c8000u, 0x3f3e4ccdu, 0x3f40199au, 0x3f41e666u, 0x3f43b334u, 0x3f458000u, 0x3f474cccu, 0x3f49199au,
    0x3f4ae666u, 0x3f4cb334u, 0x3f4e8000u, 0x3f504cccu, 0x3f52199au, 0x3f53e666u, 0x3f55b334u, 0x3f578000u, 0x3f594cccu,
    0x3f5b199au, 0x3f5ce666u, 0x3f5eb334u, 0x3f608000u, 0x3f624cccu, 0x3f64199au, 0x3f65e666u, 0x3f67b334u, 0x3f698000u,
    0x3f6b4cccu, 0x3f6d199au, 0x3f6ee666u, 0x3f70b334u, 0x3f728000u, 0x3f744cccu, 0x3f76199au, 0x3f77e666u, 0x3f79b334u,
    0x3f7b8000u, 0x3f7d4cccu, 0x3f7f199au, 0x3f800000u};

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Maps {
  float signed_map[256];
  float unsigned_map[256];
  Maps() {
    for (int i = 0; i < 128; i++) signed_map[i] = from_bits(kSignedBits[i]);
    for (int i = 0; i < 127; i++) signed_map[128 + i] = from_bits(kSignedBits[126 - i] ^ 0x80000000u);
    signed_map[255] = 1.0f;
    for (int i = 0; i < 256; i++) unsigned_map[i] = from_bits(kUnsignedBits[i]);
  }
};

const Maps& maps() {
  static const Maps m;
  return m;
}

// torch.linspace(start, end, steps) in fp32 on torch's scalar CPU path (docs/reference/nf4.md#the-linspace-caveat):
// step = (end - start) / (steps - 1) in fp32; i < steps/2 -> start + step*i, else end - step*(steps-1-i).
void linspace_scalar(float* out, float start, float end, int64_t steps) {
  if (steps == 1) {
    out[0] = start;
    return;
  }
  const float step = (end - start) / float(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; i++)
    out[i] = i < halfway ? start + mul_rn(step, float(i)) : end - mul_rn(step, float(steps - 1 - i));
}

}  // namespace

const float* dynamic_map_signed() { return maps().signed_map; }
const float* dynamic_map_unsigned() { return maps().unsigned_map; }

// create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), docs/reference/nf4.md#the-dynamic-8-bit-map:
// for i in 0..6: b = linspace(0.1, 1, n_i) (fp32), means = (b[:-1] + b[1:]) / 2, append fl32(10^(i-6)) * means
// (and the negatives when signed); append 0 and 1; sort. non_sign_bits is 7 for both (bnb's `1 if signed else 1`),
// so there are no "additional items".
void dynamic_map_build(bool is_signed, float* out) {
  std::vector<float> data;
  data.reserve(256);
  for (int i = 0; i < 7; i++) {
    const int64_t n = is_signed ? (int64_t(1) << i) + 1 : (int64_t(1) << (i + 1)) + 1;
    std::vector<float> b(size_t(n), 0.0f);
    linspace_scalar(b.data(), 0.1f, 1.0f, n);
    // Python's 10 ** (i - 6) is a double; torch casts the scalar to the tensor's fp32 before multiplying.
    const float scale = float(std::pow(10.0, double(i - 6)));
    for (int64_t j = 0; j + 1 < n; j++) {
      const float mean = (b[size_t(j)] + b[size_t(j + 1)]) / 2.0f;
      data.push_back(scale * mean);
      if (is_signed) data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  while (data.size() < 256) data.push_back(0.0f);  // bnb pads with zeros (never needed for 8 bits)
  std::sort(data.begin(), data.end());
  std::copy(data.begin(), data.begin() + 256, out);
}

// bnb dQuantize<0> (kernels.cu), docs/reference/nf4.md#double-quantisation: 7-step binary search from pivot 127 (steps
// 64..1), then a midpoint test against the neighbour on the side x lies; strict comparisons, ties keep the landing
// index. NaN -> index 0.
uint8_t dynamic_code(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) {
    const float midpoint = (upper + val) * 0.5f;
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

}  // namespace dpo
