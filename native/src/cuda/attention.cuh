// Launchers of the attention kernels (attention.cu): prefill, decode against a KV cache, backward, as
// cpu::attention_forward / attention_decode / attention_backward.
// Launcher conventions: cuda_common.cuh. Host-only declarations (the tests include this header as plain C++).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dpo::cuda {

// Causal GQA against a key store.
// q (B,T,NH*HD), k, v (B,S,NKV*HD), qpos (B*T), key_valid (B,S) or null, out (B,T,NH*HD), probs (B,NH,T,S) or null.
void launch_attention_forward(cudaStream_t stream, float* out, float* probs, const float* q, const float* k,
                              const float* v, const int* qpos, const uint8_t* key_valid, int B, int T, int S, int NH,
                              int NKV, int HD);
// Decoding against a KV cache, all M rows in one launch: row r of q (M, NH*HD) attends kcache, vcache (Bc,S,NKV*HD)
// sequence seq[r] (M) at positions 0..pos[r] (M); out (M, NH*HD). Runs the forward kernel itself, so row r has the
// bits of launch_attention_forward(B=1, T=1, S=pos[r]+1, qpos=pos[r], key_valid=null) on that sequence. A negative
// seq[r] or pos[r] gives a zero row (seq >= Bc is not checked: seq lives on the device).
void launch_attention_decode(cudaStream_t stream, float* out, const float* q, const float* kcache, const float* vcache,
                             const int* seq, const int* pos, int M, int S, int NH, int NKV, int HD);
// Accumulates into dq (B,T,NH*HD), dk, dv (B,S,NKV*HD) (each may be null); HD <= 256.
void launch_attention_backward(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout,
                               const float* probs, const float* q, const float* k, const float* v, int B, int T, int S,
                               int NH, int NKV, int HD);

}  // namespace dpo::cuda
