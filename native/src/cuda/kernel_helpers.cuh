// Device helpers shared by the op kernels (rmsnorm.cu, rope.cu, attention.cu, elementwise.cu, logits.cu, ...):
// fixed-order warp and block reductions, and a dynamic-shared-memory opt-in. nvcc only.
//
// Determinism: a warp reduction is an xor butterfly (offsets 16, 8, 4, 2, 1). Each step adds two values whose sum is
// the same bits in both lanes (float + is commutative), so after the butterfly every lane holds the same bits, and
// the order depends only on the lane layout. A block reduction then adds the per-warp results 0, 1, ..., NW-1 in
// order. Nothing depends on the grid size, so a row's result never depends on how many rows the launch has.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "dpo/errors.h"

namespace dpo::cuda::helpers {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over the NT threads of a block (NT a multiple of 32, at most 1024); every thread gets the same bits.
// All threads of the block must call it (it holds __syncthreads); red is __shared__ float[32] scratch.
template <int NT>
__device__ __forceinline__ float block_sum(float v, float* red) {
  static_assert(NT % 32 == 0 && NT <= 1024, "block of whole warps");
  v = warp_sum(v);
  if (NT == 32) return v;
  __syncthreads();  // red may still be read by a previous reduction
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = red[0];
#pragma unroll
  for (int i = 1; i < NT / 32; i++) s += red[i];
  return s;
}

template <int NT>
__device__ __forceinline__ float block_max(float v, float* red) {
  static_assert(NT % 32 == 0 && NT <= 1024, "block of whole warps");
  v = warp_max(v);
  if (NT == 32) return v;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = red[0];
#pragma unroll
  for (int i = 1; i < NT / 32; i++) s = fmaxf(s, red[i]);
  return s;
}

// Lets `kernel` use `bytes` of dynamic shared memory: above the 48 KiB default it opts in, and it throws BadInput
// (naming op and what) when the device cannot give that much. The 48 KiB default and the opt-in limit bound the
// kernel's static __shared__ arrays plus the dynamic bytes together, so the static size counts too (without it a
// dynamic size just under 48 KiB skipped the opt-in and the launch failed).
template <class Kernel>
inline void allow_dynamic_smem(Kernel* kernel, size_t bytes, const char* op, const std::string& what) {
  cudaFuncAttributes attr{};
  cudaError_t err = cudaFuncGetAttributes(&attr, kernel);
  if (err != cudaSuccess) throw EngineError(ErrorCode::Internal, std::string(op) + ": " + cudaGetErrorName(err));
  const size_t total = bytes + attr.sharedSizeBytes;
  if (total <= 48 * 1024) return;
  int dev = 0, optin = 0;
  err = cudaGetDevice(&dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (err != cudaSuccess) throw EngineError(ErrorCode::Internal, std::string(op) + ": " + cudaGetErrorName(err));
  if (total > size_t(optin))
    throw EngineError(ErrorCode::BadInput, std::string(op) + ": " + what + " needs " + std::to_string(total) +
                                               " bytes of shared memory per block; the device allows " +
                                               std::to_string(optin));
  // Only ever raised: the limit is per kernel and process-wide, and a recorded decode step (CUDA graph) launched
  // later must not find it lowered by a call with fewer keys in between.
  if (attr.maxDynamicSharedSizeBytes >= int(bytes)) return;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (err != cudaSuccess) throw EngineError(ErrorCode::Internal, std::string(op) + ": " + cudaGetErrorName(err));
}

// Grid size for a grid-stride loop over n elements with NT threads per block.
inline unsigned grid_for(int64_t n, int nt) {
  const int64_t blocks = (n + nt - 1) / nt;
  return unsigned(blocks < 65536 ? blocks : 65536);
}

}  // namespace dpo::cuda::helpers
