// fp32 linear layer on the GPU (LoRA factors, lm_head, any unquantized weight): out = x . w^T + bias and its
// backward, with the semantics of cpu/matmul.cpp (ops.h). Plain fp32 FMA on the SIMT cores; no TF32.
//
// Tiling: one kernel computes C (I,L) = A (I,J) . B (J,L) for strided A and B, which covers all three products:
//   forward  I=M, J=K, L=N   A = x       A[i,j] = x[i*K + j]      B[j,l] = w[l*K + j]   C = out, = acc + bias
//   dx       I=M, J=N, L=K   A = dout    A[i,j] = dout[i*N + j]   B[j,l] = w[j*K + l]   C = dx,  += acc
//   dw       I=N, J=M, L=K   A = dout^T  A[i,j] = dout[j*N + i]   B[j,l] = x[j*K + l]   C = dw,  += acc
// A CTA of 256 threads (16 x 16) owns a TI x TL tile of C, each thread an R x R register tile (R = 8: 128 x 128,
// R = 4: 64 x 64 when the big tiles would leave SMs idle). Thread (ty, tx) holds rows i = 64q + 4ty + {0..3} and
// columns l = 64q + 4tx + {0..3} (q < R/4), read from shared memory as float4 (broadcast / consecutive).
// j advances in chunks of 8 staged as As[j][i], Bs[j][l] (row stride TI + 4: float4-aligned, and the column-wise
// stores of a j-contiguous operand hit 32 distinct banks); global loads walk each operand's contiguous axis.
// Batch invariance: every output element is one fp32 FMA chain over j = 0, 1, ..., J-1 from 0 (no padded terms),
// then one add of the bias or into the destination, in both tile shapes: its bits depend on neither M nor the tile.
// dbias: one thread per column sums dout over m in order, then adds (as the CPU).
#include <cuda_runtime.h>

#include <climits>
#include <string>

#include "cuda/cuda_common.cuh"
#include "cuda/matmul.cuh"

namespace dpo::cuda {
namespace {

constexpr int kThreads = 256;  // 16 x 16
constexpr int kTJ = 8;         // j chunk staged per iteration

// ---- kernel ---------------------------------------------------------------------------------------------------
// R: register tile R x R (4 or 8), CTA tile T = 16R. A_J: A is contiguous along j (else along i). B_J: B is
// contiguous along j (else along l). ACCUMULATE: C += acc (backward); else C = acc (+ bias[l]) (forward).
template <int R, bool A_J, bool B_J, bool ACCUMULATE>
__global__ void __launch_bounds__(kThreads)
matmul_f32_kernel(float* __restrict__ C, int64_t ldc, const float* __restrict__ A, int64_t sai, int64_t saj,
                  const float* __restrict__ B, int64_t sbj, int64_t sbl, const float* __restrict__ bias, int I, int J,
                  int L) {
  constexpr int T = 16 * R, Q = R / 4, S = T + 4;
  __shared__ __align__(16) float As[kTJ][S];
  __shared__ __align__(16) float Bs[kTJ][S];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int i0 = blockIdx.y * T, l0 = blockIdx.x * T;

  float acc[R][R];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int c = 0; c < R; c++) acc[r][c] = 0.0f;

  for (int j0 = 0; j0 < J; j0 += kTJ) {
    // Stage A (T x kTJ) and B (kTJ x T), zeros outside the matrices.
#pragma unroll
    for (int e = 0; e < (T * kTJ) / kThreads; e++) {
      const int idx = tid + e * kThreads;
      const int ii = A_J ? idx / kTJ : idx % T, jj = A_J ? idx % kTJ : idx / T;
      const int gi = i0 + ii, gj = j0 + jj;
      As[jj][ii] = (gi < I && gj < J) ? A[int64_t(gi) * sai + int64_t(gj) * saj] : 0.0f;
    }
#pragma unroll
    for (int e = 0; e < (T * kTJ) / kThreads; e++) {
      const int idx = tid + e * kThreads;
      const int ll = B_J ? idx / kTJ : idx % T, jj = B_J ? idx % kTJ : idx / T;
      const int gl = l0 + ll, gj = j0 + jj;
      Bs[jj][ll] = (gl < L && gj < J) ? B[int64_t(gj) * sbj + int64_t(gl) * sbl] : 0.0f;
    }
    __syncthreads();

    // Only real j terms enter the chains (a padded 0*0 term could turn a -0 sum into +0).
    const int jn = min(kTJ, J - j0);
#pragma unroll
    for (int j = 0; j < kTJ; j++) {
      if (j < jn) {
        float a[R], b[R];
#pragma unroll
        for (int q = 0; q < Q; q++) {
          const float4 av = *reinterpret_cast<const float4*>(&As[j][64 * q + 4 * ty]);
          const float4 bv = *reinterpret_cast<const float4*>(&Bs[j][64 * q + 4 * tx]);
          a[4 * q] = av.x, a[4 * q + 1] = av.y, a[4 * q + 2] = av.z, a[4 * q + 3] = av.w;
          b[4 * q] = bv.x, b[4 * q + 1] = bv.y, b[4 * q + 2] = bv.z, b[4 * q + 3] = bv.w;
        }
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
          for (int c = 0; c < R; c++) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
      }
    }
    __syncthreads();  // the next chunk overwrites As/Bs
  }

#pragma unroll
  for (int r = 0; r < R; r++) {
    const int gi = i0 + 64 * (r / 4) + 4 * ty + r % 4;
    if (gi >= I) continue;
#pragma unroll
    for (int c = 0; c < R; c++) {
      const int gl = l0 + 64 * (c / 4) + 4 * tx + c % 4;
      if (gl >= L) continue;
      float* o = C + int64_t(gi) * ldc + gl;
      if (ACCUMULATE) {
        *o += acc[r][c];
      } else {
        *o = bias ? acc[r][c] + bias[gl] : acc[r][c];
      }
    }
  }
}

// dbias (N) += sum over m = 0..M-1 of dout (M,N)[m, n], in m order.
__global__ void bias_grad_kernel(float* __restrict__ dbias, const float* __restrict__ dout, int M, int N) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  float s = 0.0f;
  for (int m = 0; m < M; m++) s += dout[int64_t(m) * N + n];
  dbias[n] += s;
}

// ---- launcher -------------------------------------------------------------------------------------------------
int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 100;
    }
    return v;
  }();
  return n;
}

template <int R, bool A_J, bool B_J, bool ACCUMULATE>
void launch_tiles(cudaStream_t stream, const char* op, float* C, int64_t ldc, const float* A, int64_t sai, int64_t saj,
                  const float* B, int64_t sbj, int64_t sbl, const float* bias, int I, int J, int L) {
  constexpr int T = 16 * R;
  const int64_t gy = ceil_div(I, T);
  if (gy > 65535) fail(ErrorCode::Internal, std::string(op) + ": " + std::to_string(I) + " rows exceed the grid");
  const dim3 grid(unsigned(ceil_div(L, T)), unsigned(gy));
  matmul_f32_kernel<R, A_J, B_J, ACCUMULATE>
      <<<grid, kThreads, 0, stream>>>(C, ldc, A, sai, saj, B, sbj, sbl, bias, I, J, L);
  DPO_CUDA_LAUNCH_CHECK(op, stream);
}

// Picks the tile shape by size only for speed: both shapes give every element the same FMA chain.
template <bool A_J, bool B_J, bool ACCUMULATE>
void launch_product(cudaStream_t stream, const char* op, float* C, int64_t ldc, const float* A, int64_t sai,
                    int64_t saj, const float* B, int64_t sbj, int64_t sbl, const float* bias, int I, int J, int L) {
  if (I <= 0 || L <= 0) return;
  if (ceil_div(I, 128) * ceil_div(L, 128) >= 2 * sm_count())
    launch_tiles<8, A_J, B_J, ACCUMULATE>(stream, op, C, ldc, A, sai, saj, B, sbj, sbl, bias, I, J, L);
  else launch_tiles<4, A_J, B_J, ACCUMULATE>(stream, op, C, ldc, A, sai, saj, B, sbj, sbl, bias, I, J, L);
}

}  // namespace

// ---- entries --------------------------------------------------------------------------------------------------
void launch_matmul_forward(cudaStream_t stream, float* out /*(M,N)*/, const float* x /*(M,K)*/,
                           const float* w /*(N,K)*/, const float* bias /*(N) or null*/, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  launch_product</*A_J=*/true, /*B_J=*/true, false>(stream, "matmul_forward", out, N, x, K, 1, w, 1, K, bias, M,
                                                    K < 0 ? 0 : K, N);
}

void launch_matmul_backward(cudaStream_t stream, float* dx /*(M,K) or null*/, float* dw /*(N,K) or null*/,
                            float* dbias /*(N) or null*/, const float* dout /*(M,N)*/, const float* x /*(M,K)*/,
                            const float* w /*(N,K)*/, int M, int K, int N) {
  if (M <= 0 || N <= 0 || K < 0) return;
  // dx[m,k] += sum_n dout[m,n] w[n,k]
  if (dx)
    launch_product<true, false, true>(stream, "matmul_backward (dx)", dx, K, dout, N, 1, w, K, 1, nullptr, M, N, K);
  // dw[n,k] += sum_m dout[m,n] x[m,k]
  if (dw)
    launch_product<false, false, true>(stream, "matmul_backward (dw)", dw, K, dout, 1, N, x, K, 1, nullptr, N, M, K);
  if (dbias) {
    const int threads = 256;
    bias_grad_kernel<<<unsigned(ceil_div(N, threads)), threads, 0, stream>>>(dbias, dout, M, N);
    DPO_CUDA_LAUNCH_CHECK("matmul_backward (dbias)", stream);
  }
}

}  // namespace dpo::cuda
