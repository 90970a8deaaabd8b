// Fused NF4 linear layer on the GPU (docs/reference/linear4bit.md#prefill-and-training-path), as cpu/matmul_nf4.cpp:
//   forward   out (M,N)  = bf16(x) (M,K) . Wq^T + bias      Wq = bf16(storage(NF4[code] * absmax)) (N,K)
//   backward  dx  (M,K) += bf16(dout) (M,N) . Wq
// with fp32 accumulation on the tensor cores (mma.sync m16n8k16 bf16 -> fp32, sm_80+). The weights stay 4-bit in
// memory: each CTA decodes the W tile it needs into shared memory (fp32 multiply by the block absmax, rounding to
// the storage dtype, then to bf16, exactly the CPU's double rounding); no bf16 copy of W is ever written.
//
// Tiling (one kernel template, both directions): a CTA owns BM rows x BO output columns and walks the reduction
// dimension in stages of BR: per stage it stages A = bf16(activation) as As[BM][BR+8] and the decoded weights as
// Ws (forward: [BO n][BR k], backward: [BR n][BO k], +8 bf16 row padding: 16-byte aligned rows for ldmatrix, and
// the 8 row addresses of each 8x8 matrix fall in distinct banks), then its warps run the MMAs.
//   MMA layout: A fragments by ldmatrix.x4 (16 rows x 16 k), B fragments by ldmatrix.x2 from Ws rows = n
//   (forward: W (N,K) row-major is exactly the "col" B operand) or ldmatrix.x2.trans from Ws rows = reduction
//   index (backward), accumulators 16x8 fp32 per (m16, n8) tile.
//   Prefill/training (M > 16): BM 64, BO 64, BR 64, 4 warps as 2 x 2, each warp 32 x 32 = 2 x 4 MMA tiles.
//   Decode (M <= 16):          BM 16, BO 32, BR 256, 4 warps as 1 x 4, each warp 16 x 8 = one MMA tile; narrow
//                               column tiles give N/32 CTAs and the wide stage keeps 32 bytes of W per thread in
//                               flight. (A SIMT GEMV would round differently from the MMA path, so decode uses the
//                               same MMA arithmetic with the row tile padded to 16.)
// Batch invariance: every output element starts from 0 and takes one MMA per 16-wide reduction chunk, chunks in
// increasing order, then one add of the bias / into dx. Rows never mix inside an MMA, zero rows past M change
// nothing, and the two shapes run the identical chunk sequence: the bits of row m do not depend on M or on the
// shape chosen. Reduction tails are zero-padded to a multiple of 16, which depends on K (N) only.
// Layout (quant/nf4.h): element e = n*K + k, nibble high-first in byte e/2, absmax[e/64]. When K % 8 == 0 a group
// of 8 elements is one aligned 32-bit load inside one absmax block (blocks may still cross rows: only whole groups
// matter); otherwise (K % 8 != 0, e.g. the tiny model's FFN 172, or odd K) every element is fetched on its own.
// Not yet pipelined: one stage in shared memory at a time (loads of a stage are all issued before any is used), and
// latency is hidden by 3+ resident CTAs per SM (__launch_bounds__(128, 3)); cp.async double buffering is the next step.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstring>
#include <string>

#include "cuda/cuda_common.cuh"
#include "cuda/matmul_nf4.cuh"

namespace dpo::cuda {
namespace {

constexpr int kPad = 8;  // bf16 elements of row padding in shared memory (16 bytes)
constexpr int kWarps = 4, kThreads = 32 * kWarps;

struct Nf4Table {
  float v[16];
};

// ---- device helpers -------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(p))
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(p))
               : "memory");
}

// d (16x8 fp32) += a (16x16 bf16, row) . b (16x8 bf16, col).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();  // unreachable: the backend refuses devices below compute capability 8.0
#endif
}

// Two fp32 values -> one bf16x2 word (RN-even, the lower column in the low half, as shared memory holds them).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

// One weight as the GEMM sees it before the bf16 rounding: NF4[code] * absmax in fp32 (one multiply, as the CPU),
// rounded to the storage dtype (fp16: RN-even with subnormals and overflow to inf, as core/half.h).
__device__ __forceinline__ float dequant(const float* table, uint32_t code, float amax, bool f16) {
  float v = __fmul_rn(table[code], amax);
  if (f16) v = __half2float(__float2half_rn(v));
  return v;
}

// ---- kernel ---------------------------------------------------------------------------------------------------
// BM x BO output tile, reduction stages of BR, warps WM x WO. BWD selects the backward product (see the header).
// a: the activation (M, R) with R = K forward / N backward; out: (M, O) with O = N forward / K backward.
// a_vec: R % 4 == 0 and a 16-byte aligned (float4 loads). w_vec: K % 8 == 0 (32-bit nibble loads).
template <int BM, int BO, int BR, int WM, int WO, bool BWD>
__global__ void __launch_bounds__(kThreads, 3)
nf4_mma_kernel(float* __restrict__ out, const float* __restrict__ a, const uint8_t* __restrict__ packed,
               const float* __restrict__ absmax, const float* __restrict__ bias, Nf4Table table, int M, int N, int K,
               bool f16, bool a_vec, bool w_vec) {
  static_assert(WM * WO == kWarps, "4 warps");
  constexpr int TM = BM / WM, TO = BO / WO;  // warp tile
  constexpr int MT = TM / 16, NT = TO / 8;  // MMA tiles per warp
  static_assert(MT * 16 * WM == BM && NT * 8 * WO == BO && BR % 16 == 0, "tile shapes");
  constexpr int WROWS = BWD ? BR : BO, WCOLS = BWD ? BO : BR;  // Ws: W rows (n) x W columns (k)
  constexpr int AGROUPS = BM * BR / 4, WGROUPS = WROWS * WCOLS / 8;
  static_assert(AGROUPS % kThreads == 0 && WGROUPS % kThreads == 0 && WCOLS % 8 == 0, "even staging");
  constexpr int APT = AGROUPS / kThreads, WPT = WGROUPS / kThreads;

  __shared__ __align__(16) __nv_bfloat16 As[BM][BR + kPad];
  __shared__ __align__(16) __nv_bfloat16 Ws[WROWS][WCOLS + kPad];
  __shared__ float s_table[16];

  const int R = BWD ? N : K, O = BWD ? K : N;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int m0 = blockIdx.y * BM, o0 = blockIdx.x * BO;
  const int wm0 = (warp / WO) * TM, wo0 = (warp % WO) * TO;
  if (tid < 16) s_table[tid] = table.v[tid];  // visible after the first barrier below

  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;

  for (int r0 = 0; r0 < R; r0 += BR) {
    __syncthreads();  // the previous stage's MMAs are done with As / Ws

    // -- stage A: rows m0.., columns r0.. of the activation, as bf16 (zeros outside).
    if (a_vec) {
      float4 v[APT];
#pragma unroll
      for (int i = 0; i < APT; i++) {  // all loads first, then convert: APT loads in flight per thread
        const int g = tid + i * kThreads, row = g / (BR / 4), col = (g % (BR / 4)) * 4;
        const int gm = m0 + row, gr = r0 + col;
        v[i] = (gm < M && gr < R) ? *reinterpret_cast<const float4*>(a + int64_t(gm) * R + gr)
                                  : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int i = 0; i < APT; i++) {
        const int g = tid + i * kThreads, row = g / (BR / 4), col = (g % (BR / 4)) * 4;
        *reinterpret_cast<uint2*>(&As[row][col]) = make_uint2(pack_bf16x2(v[i].x, v[i].y), pack_bf16x2(v[i].z, v[i].w));
      }
    } else {
#pragma unroll
      for (int i = 0; i < APT; i++) {
        const int g = tid + i * kThreads, row = g / (BR / 4), col = (g % (BR / 4)) * 4;
        const int gm = m0 + row;
        float f[4];
#pragma unroll
        for (int c = 0; c < 4; c++) {
          const int gr = r0 + col + c;
          f[c] = (gm < M && gr < R) ? a[int64_t(gm) * R + gr] : 0.0f;
        }
        *reinterpret_cast<uint2*>(&As[row][col]) = make_uint2(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]));
      }
    }

    // -- stage W: rows wn0.., columns wk0.. of W decoded to bf16 (zeros outside).
    const int wn0 = BWD ? r0 : o0, wk0 = BWD ? o0 : r0;
    if (w_vec) {
      uint32_t q[WPT];
      float am[WPT];
#pragma unroll
      for (int i = 0; i < WPT; i++) {
        const int g = tid + i * kThreads, row = g / (WCOLS / 8), col = (g % (WCOLS / 8)) * 8;
        const int n = wn0 + row, k = wk0 + col;
        q[i] = 0u, am[i] = 0.0f;
        if (n < N && k < K) {  // K % 8 == 0: the 8 elements are in range, 4-byte aligned and in one block
          const int64_t e = int64_t(n) * K + k;
          q[i] = *reinterpret_cast<const uint32_t*>(packed + (e >> 1));
          am[i] = absmax[e >> 6];
        }
      }
#pragma unroll
      for (int i = 0; i < WPT; i++) {
        const int g = tid + i * kThreads, row = g / (WCOLS / 8), col = (g % (WCOLS / 8)) * 8;
        const int n = wn0 + row, k = wk0 + col;
        uint4 st = make_uint4(0u, 0u, 0u, 0u);
        if (n < N && k < K) {
          // Byte b of q holds elements 2b (high nibble) and 2b+1 (low nibble).
          uint32_t w2[4];
#pragma unroll
          for (int b = 0; b < 4; b++) {
            const uint32_t byte = (q[i] >> (8 * b)) & 0xffu;
            w2[b] = pack_bf16x2(dequant(s_table, byte >> 4, am[i], f16), dequant(s_table, byte & 0xfu, am[i], f16));
          }
          st = make_uint4(w2[0], w2[1], w2[2], w2[3]);
        }
        *reinterpret_cast<uint4*>(&Ws[row][col]) = st;
      }
    } else {
#pragma unroll
      for (int i = 0; i < WPT; i++) {
        const int g = tid + i * kThreads, row = g / (WCOLS / 8), col = (g % (WCOLS / 8)) * 8;
        const int n = wn0 + row;
        float f[8];
#pragma unroll
        for (int c = 0; c < 8; c++) {
          const int k = wk0 + col + c;
          f[c] = 0.0f;
          if (n < N && k < K) {
            const int64_t e = int64_t(n) * K + k;
            const uint32_t byte = packed[e >> 1];
            f[c] = dequant(s_table, (e & 1) ? (byte & 0xfu) : (byte >> 4), absmax[e >> 6], f16);
          }
        }
        *reinterpret_cast<uint4*>(&Ws[row][col]) = make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]),
                                                              pack_bf16x2(f[4], f[5]), pack_bf16x2(f[6], f[7]));
      }
    }
    __syncthreads();

    // -- MMAs over the stage, 16-wide reduction chunks in increasing order.
#pragma unroll
    for (int ks = 0; ks < BR / 16; ks++) {
      uint32_t af[MT][4], bfr[NT][2];
#pragma unroll
      for (int i = 0; i < MT; i++)  // lanes 0-15: rows 0-15 at k 0; lanes 16-31: rows 0-15 at k 8
        ldmatrix_x4(af[i], &As[wm0 + 16 * i + (lane & 15)][16 * ks + (lane >> 4) * 8]);
#pragma unroll
      for (int j = 0; j < NT; j++) {  // lanes 0-7: reduction 0-7 (b0); lanes 8-15: reduction 8-15 (b1)
        if (BWD) ldmatrix_x2_trans(bfr[j], &Ws[16 * ks + (lane & 7) + ((lane >> 3) & 1) * 8][wo0 + 8 * j]);
        else ldmatrix_x2(bfr[j], &Ws[wo0 + 8 * j + (lane & 7)][16 * ks + ((lane >> 3) & 1) * 8]);
      }
#pragma unroll
      for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) mma_bf16_16816(acc[i][j], af[i], bfr[j]);
    }
  }

  // -- epilogue: acc[i][j] = {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)} of the 16x8 tile, g = lane/4, t = lane%4.
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const int m = m0 + wm0 + 16 * i + g + (c >> 1) * 8, o = o0 + wo0 + 8 * j + 2 * t + (c & 1);
        if (m >= M || o >= O) continue;
        float* dst = out + int64_t(m) * O + o;
        if (BWD) *dst += acc[i][j][c];
        else *dst = bias ? acc[i][j][c] + bias[o] : acc[i][j][c];
      }
}

// ---- launcher -------------------------------------------------------------------------------------------------
Nf4Table nf4_table() {
  Nf4Table t;
  std::memcpy(t.v, kNf4Table, sizeof t.v);
  return t;
}

template <int BM, int BO, int BR, int WM, int WO, bool BWD>
void launch_nf4(cudaStream_t stream, const char* op, float* out, const float* a, const Nf4Device& w, const float* bias,
                int M, int N, int K, bool a_vec) {
  const int O = BWD ? K : N;
  const int64_t gy = ceil_div(M, BM);
  if (gy > 65535) fail(ErrorCode::Internal, std::string(op) + ": " + std::to_string(M) + " rows exceed the grid");
  const dim3 grid(unsigned(ceil_div(O, BO)), unsigned(gy));
  nf4_mma_kernel<BM, BO, BR, WM, WO, BWD><<<grid, kThreads, 0, stream>>>(
      out, a, w.packed, w.absmax, bias, nf4_table(), M, N, K, w.dtype == Nf4StorageDType::F16, a_vec, K % 8 == 0);
  DPO_CUDA_LAUNCH_CHECK(op, stream);
}

// Shape of the weight as kernel ints (the kernels index with int64 where products can grow).
void dims_of(const Nf4Device& w, const char* op, int& N, int& K) {
  if (w.rows < 0 || w.cols < 0 || w.rows > INT_MAX || w.cols > INT_MAX)
    fail(ErrorCode::Internal, std::string(op) + ": weight shape out of range");
  if (w.rows > 0 && w.cols > 0 && (!w.packed || !w.absmax))
    fail(ErrorCode::Internal, std::string(op) + ": weight is not on the device");
  N = int(w.rows), K = int(w.cols);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

// ---- entries --------------------------------------------------------------------------------------------------
// M <= 16 runs the decode tile shape; both shapes give every element the same bits (see the header).
void launch_matmul_nf4_forward(cudaStream_t stream, float* out /*(M,N)*/, const float* x /*(M,K)*/,
                               const Nf4Device& w /*(N,K)*/, const float* bias /*(N) or null*/, int M) {
  int N, K;
  dims_of(w, "matmul_nf4", N, K);
  if (M <= 0 || N <= 0) return;
  const bool a_vec = K % 4 == 0 && aligned16(x);
  if (M <= 16) launch_nf4<16, 32, 256, 1, 4, false>(stream, "matmul_nf4 (decode)", out, x, w, bias, M, N, K, a_vec);
  else launch_nf4<64, 64, 64, 2, 2, false>(stream, "matmul_nf4", out, x, w, bias, M, N, K, a_vec);
}

void launch_matmul_nf4_backward_input(cudaStream_t stream, float* dx /*(M,K)*/, const float* dout /*(M,N)*/,
                                      const Nf4Device& w /*(N,K)*/, int M) {
  int N, K;
  dims_of(w, "matmul_nf4_backward_input", N, K);
  if (M <= 0 || N <= 0 || K <= 0) return;
  const bool a_vec = N % 4 == 0 && aligned16(dout);
  if (M <= 16)
    launch_nf4<16, 32, 256, 1, 4, true>(stream, "matmul_nf4_backward_input (decode)", dx, dout, w, nullptr, M, N, K,
                                        a_vec);
  else launch_nf4<64, 64, 64, 2, 2, true>(stream, "matmul_nf4_backward_input", dx, dout, w, nullptr, M, N, K, a_vec);
}

}  // namespace dpo::cuda
