// Rotary position embedding on the GPU (rotate-half form), forward and its transpose, as cpu::rope_forward /
// rope_backward, with the same arithmetic:
//  - inv_freq (HD/2) is the model's RoPE table (model/rope_table.h: plain, linear, dynamic, yarn, llama3), computed
//    on the host once and passed to the kernel by value, so it is the CPU's bits (device powf may differ by an ulp
//    or two from glibc's).
//  - angle = float(pos) * inv_freq[j], one fp32 product, as the CPU.
//  - cos/sin are evaluated in double (sincos) and rounded once to fp32, as the CPU does with std::cos/std::sin on the
//    double angle. CUDA's double sincos is within 2 ulp (of double), glibc's within 1, so the fp32 values differ only
//    when the exact value lies within ~2 double ulps of an fp32 rounding boundary (probability ~1e-8 per value):
//    in practice the same bits. Both are then multiplied by the table's attention scaling (yarn) with __fmul_rn,
//    as the CPU's mul_rn, when it is not 1.
//  - forward: x1 c + (-x2) s and x2 c + x1 s with each product rounded on its own (__fmul_rn, never fused into an
//    FMA), as the CPU's mul_rn, so the forward matches the CPU bit for bit given equal cos/sin. The backward rounds
//    the same way; the CPU backward may let the compiler fuse one product into an FMA (last-bit differences).
//
// Parallel decomposition: one block of 128 threads per row m. The block first computes the row's HD/2 cos/sin
// pairs into shared memory (threads over j), then applies them to the H heads (threads over the H*HD/2 pairs,
// j fastest, so each warp touches consecutive floats). Rows are independent: results never depend on M.
#include <cmath>
#include <vector>

#include "cuda/rope.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/kernel_helpers.cuh"

namespace dpo::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxHalf = 256;  // HD <= 512

struct InvFreq {
  float f[kMaxHalf];  // 1 KiB by value: kernel parameters allow 4 KiB
};

// ---- kernel ----

template <bool kBackward>
__global__ void __launch_bounds__(kThreads)
rope_kernel(float* x /*(M,H*HD)*/, const int* pos /*(M)*/, int H, int HD, const InvFreq inv, float scaling) {
  __shared__ float cs[kMaxHalf], sn[kMaxHalf];
  const int half = HD / 2;
  const int64_t m = blockIdx.x;
  const float p = float(pos[m]);
  for (int j = threadIdx.x; j < half; j += kThreads) {
    const float a = p * inv.f[j];
    double s, c;
    sincos(double(a), &s, &c);
    cs[j] = float(c);
    sn[j] = float(s);
    if (scaling != 1.0f) {
      cs[j] = __fmul_rn(cs[j], scaling);
      sn[j] = __fmul_rn(sn[j], scaling);
    }
  }
  __syncthreads();
  float* row = x + m * int64_t(H) * HD;
  const int pairs = H * half;
  for (int i = threadIdx.x; i < pairs; i += kThreads) {
    const int h = i / half, j = i - h * half;
    float* v = row + int64_t(h) * HD;
    const float x1 = v[j], x2 = v[j + half], c = cs[j], s = sn[j];
    if (!kBackward) {
      // (x * cos) + (rotate_half(x) * sin), rotate_half(x) = cat(-x2, x1).
      v[j] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(-x2, s));
      v[j + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    } else {
      // The transpose rotation: [dx1; dx2] = [c s; -s c] [dy1; dy2].
      v[j] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
      v[j + half] = __fsub_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
  }
}

// ---- launcher ----

template <bool kBackward>
void rope_launch(cudaStream_t stream, float* x, const int* pos, int M, int H, int HD, const RopeTable& table,
                 const char* op) {
  if (HD % 2 != 0) throw EngineError(ErrorCode::BadInput, "rope: head_dim must be even");
  if (HD <= 0 || HD / 2 > kMaxHalf || M < 0 || H < 0)
    throw EngineError(ErrorCode::BadInput, "rope: head_dim must be in 2..512 (got " + std::to_string(HD) + ")");
  check_rope_table(table, HD);
  if (M == 0 || H == 0) return;
  InvFreq inv{};
  for (int j = 0; j < HD / 2; j++) inv.f[j] = table.inv_freq[size_t(j)];
  rope_kernel<kBackward><<<unsigned(M), kThreads, 0, stream>>>(x, pos, H, HD, inv, table.attention_scaling);
  check_last_launch(op);
}

}  // namespace

// ---- entries ----

void launch_rope_forward(cudaStream_t stream, float* x, const int* pos, int M, int H, int HD, const RopeTable& table) {
  rope_launch<false>(stream, x, pos, M, H, HD, table, "rope_forward");
}

void launch_rope_backward(cudaStream_t stream, float* dx, const int* pos, int M, int H, int HD,
                          const RopeTable& table) {
  rope_launch<true>(stream, dx, pos, M, H, HD, table, "rope_backward");
}

}  // namespace dpo::cuda
