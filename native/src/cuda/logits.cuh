// Launchers of the logits kernels (logits.cu): log-softmax + gather and its backward, argmax.
// Launcher conventions: cuda_common.cuh. Host-only declarations (the tests include this header as plain C++).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dpo::cuda {

// logp (M) = log_softmax(logits[m])[target[m]], 0 where target < 0; lse (M) saved when non-null.
// A target >= V (the CPU op throws BadInput) gives NaN.
void launch_logsoftmax_gather_forward(cudaStream_t stream, float* logp, float* lse, const float* logits,
                                      const int* target, int M, int V);
// dlogits (M,V) = dlogp[m] * (onehot(target) - softmax(logits[m])), OVERWRITES; rows with target < 0 get 0,
// rows with target >= V get NaN.
void launch_logsoftmax_gather_backward(cudaStream_t stream, float* dlogits, const float* dlogp, const float* logits,
                                       const float* lse, const int* target, int M, int V);
// out (M) = argmax over each row of x (M,V), first index on ties (NaN entries never win, as on the CPU).
void launch_argmax_rows(cudaStream_t stream, int* out, const float* x, int M, int V);

}  // namespace dpo::cuda
