// RMSNorm on the GPU, forward and backward (as cpu::rmsnorm_forward / rmsnorm_backward).
//
// Parallel decomposition:
//  - forward and backward-dx: one block of 256 threads per row m. Thread i handles columns i, i+256, ... (coalesced);
//    the row's sum (x^2, or (w dy) x) is a fixed-order block reduction (kernel_helpers.cuh), so a row's result
//    depends only on that row and C, never on M. The row is read a second time for the output (L1/L2 hit).
//  - backward-dw: dw[c] += sum_m dout[m,c] x[m,c] rstd[m]. One block of 32 x 8 threads per 32 columns: thread (c, j)
//    sums rows j, j+8, j+16, ... of column c in order, then the 8 partials of the column are added in order j = 0..7.
//    No float atomics, so dw is bit-reproducible; each warp reads 32 consecutive columns of one row (coalesced).
#include "cuda/rmsnorm.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/kernel_helpers.cuh"

namespace dpo::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kDwCols = 32, kDwRows = 8;

// ---- kernels ----

__global__ void __launch_bounds__(kRowThreads)
rmsnorm_forward_kernel(float* out /*(M,C)*/, float* rstd /*(M) or null*/, const float* x /*(M,C)*/,
                       const float* w /*(C)*/, int C, float eps) {
  __shared__ float red[32];
  const int64_t m = blockIdx.x;
  const float* xm = x + m * C;
  float* om = out + m * C;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += kRowThreads) ss = fmaf(xm[c], xm[c], ss);
  ss = helpers::block_sum<kRowThreads>(ss, red);
  const float r = 1.0f / sqrtf(ss / float(C) + eps);  // IEEE sqrt and division (no fast-math)
  // Every thread has read its x before the block reduction's barrier, so out may alias x.
  for (int c = threadIdx.x; c < C; c += kRowThreads) om[c] = w[c] * (xm[c] * r);
  if (rstd && threadIdx.x == 0) rstd[m] = r;
}

// dx_i += r w_i dy_i - (r^3 / C) x_i sum_j w_j dy_j x_j.
__global__ void __launch_bounds__(kRowThreads)
rmsnorm_backward_dx_kernel(float* dx /*(M,C)*/, const float* dout /*(M,C)*/, const float* x /*(M,C)*/,
                           const float* w /*(C)*/, const float* rstd /*(M)*/, int C) {
  __shared__ float red[32];
  const int64_t m = blockIdx.x;
  const float* xm = x + m * C;
  const float* dy = dout + m * C;
  float* d = dx + m * C;
  const float r = rstd[m];
  float s = 0.0f;
  for (int c = threadIdx.x; c < C; c += kRowThreads) s = fmaf(w[c] * dy[c], xm[c], s);
  s = helpers::block_sum<kRowThreads>(s, red);
  const float k = r * r * r / float(C) * s;
  for (int c = threadIdx.x; c < C; c += kRowThreads) d[c] += r * (w[c] * dy[c]) - k * xm[c];
}

__global__ void __launch_bounds__(kDwCols * kDwRows)
rmsnorm_backward_dw_kernel(float* dw /*(C)*/, const float* dout /*(M,C)*/, const float* x /*(M,C)*/,
                           const float* rstd /*(M)*/, int M, int C) {
  __shared__ float part[kDwRows][kDwCols];
  const int tc = threadIdx.x, tr = threadIdx.y;
  const int c = blockIdx.x * kDwCols + tc;
  float s = 0.0f;
  if (c < C)
    for (int64_t m = tr; m < M; m += kDwRows) s = fmaf(dout[m * C + c], x[m * C + c] * rstd[m], s);
  part[tr][tc] = s;
  __syncthreads();
  if (tr == 0 && c < C) {
    float t = part[0][tc];
#pragma unroll
    for (int j = 1; j < kDwRows; j++) t += part[j][tc];
    dw[c] += t;
  }
}

}  // namespace

// ---- launchers (entries) ----

void launch_rmsnorm_forward(cudaStream_t stream, float* out, float* rstd, const float* x, const float* w, int M, int C,
                            float eps) {
  if (M < 0 || C <= 0) throw EngineError(ErrorCode::BadInput, "rmsnorm: bad shape");
  if (M == 0) return;
  rmsnorm_forward_kernel<<<unsigned(M), kRowThreads, 0, stream>>>(out, rstd, x, w, C, eps);
  check_last_launch("rmsnorm_forward");
}

void launch_rmsnorm_backward(cudaStream_t stream, float* dx, float* dw, const float* dout, const float* x,
                             const float* w, const float* rstd, int M, int C) {
  if (M < 0 || C <= 0) throw EngineError(ErrorCode::BadInput, "rmsnorm_backward: bad shape");
  if (M == 0) return;
  rmsnorm_backward_dx_kernel<<<unsigned(M), kRowThreads, 0, stream>>>(dx, dout, x, w, rstd, C);
  check_last_launch("rmsnorm_backward");
  if (dw) {
    const dim3 block(kDwCols, kDwRows);
    rmsnorm_backward_dw_kernel<<<unsigned((C + kDwCols - 1) / kDwCols), block, 0, stream>>>(dw, dout, x, rstd, M, C);
    check_last_launch("rmsnorm_backward");
  }
}

}  // namespace dpo::cuda
