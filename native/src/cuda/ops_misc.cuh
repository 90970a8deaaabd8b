// Launchers of the CUDA decoder ops other than the matrix products (rmsnorm, rope, attention, swiglu, embedding,
// add, log-softmax + gather, argmax, the small transfer steps between them, and the optimizer step). Host-only
// declarations: this header also compiles as plain C++ (the tests include it), so it holds no device code. The
// kernels live one family per file (norms.cu, rope.cu, attention.cu, elementwise.cu, logits.cu, transfer_ops.cu,
// optimizer_ops.cu), each in three parts: kernel, launcher, entry.
//
// Semantics, shapes and argument order are those of src/cpu/ops.h (the CPU reference); every pointer is a device
// pointer, the stream comes first, and the work is queued on that stream (nothing here synchronizes, except the
// attention backward's scratch fallback noted in attention.cu). Every op computes each output row with arithmetic
// that depends only on that row and the row length (never on M, B or T), and every reduction runs in a fixed order
// without float atomics, so results are batch-invariant and bit-reproducible run to run.
//
// Errors never abort: a launcher checks its arguments (EngineError BadInput, like the CPU op where the CPU op checks
// on the host) and then the launch (EngineError Internal, "<op>: <cuda error name>").
// Where the CPU op validates data that here lives on the device (embedding ids, logsoftmax targets), the kernels
// cannot throw; they write a defined value instead (see the launcher comments) and the caller validates on the host.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/cuda_common.cuh"
#include "dpo/backend.h"
#include "dpo/errors.h"

namespace dpo::cuda {

namespace ops_misc_detail {
// Throws EngineError(Internal, "<op>: <cuda error name>") if the last launch (or an earlier async error) failed.
// As DPO_CUDA_LAUNCH_CHECK (cuda_common.cuh): a sticky fault is E_DEVICE_FAULT (the app restarts the engine on it,
// not on E_INTERNAL), and DPO_CUDA_SYNC=1 waits for the kernel so a fault is reported by the op that caused it
// (these launchers do not pass their stream here, so it waits for the device).
inline void check_launch(const char* op) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_after_launch()) err = cudaDeviceSynchronize();
  if (err == cudaSuccess) return;
  if (is_sticky_cuda_error(err)) throw_cuda_error(err, op, __FILE__, __LINE__);
  throw EngineError(ErrorCode::Internal, std::string(op) + ": " + cudaGetErrorName(err));
}
}  // namespace ops_misc_detail

// norms.cu
// out (M,C) = x / sqrt(mean(x^2) + eps) * w (C); rstd (M) saved when non-null. out may alias x.
void launch_rmsnorm_forward(cudaStream_t stream, float* out, float* rstd, const float* x, const float* w, int M, int C,
                            float eps);
// dx (M,C) += ..., dw (C) += ... (dw may be null); dw sums over m in a fixed order.
void launch_rmsnorm_backward(cudaStream_t stream, float* dx, float* dw, const float* dout, const float* x,
                             const float* w, const float* rstd, int M, int C);

// rope.cu: in-place rotate-half RoPE on x (M, H*HD), row m at position pos[m] (M); HD even, HD <= 512; the table's
// inv_freq has HD/2 entries (model/rope_table.h).
void launch_rope_forward(cudaStream_t stream, float* x, const int* pos, int M, int H, int HD, const RopeTable& table);
void launch_rope_backward(cudaStream_t stream, float* dx, const int* pos, int M, int H, int HD,
                          const RopeTable& table);

// attention.cu: causal GQA against a key store, as cpu::attention_forward / attention_backward.
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

// elementwise.cu
// out (M,F) = silu(gate) * up.
void launch_swiglu_forward(cudaStream_t stream, float* out, const float* gate, const float* up, int M, int F);
// dgate, dup (M,F) += ... (either may be null).
void launch_swiglu_backward(cudaStream_t stream, float* dgate, float* dup, const float* dout, const float* gate,
                            const float* up, int M, int F);
// out (M,C) = table[ids[m]] (V,C). A negative id gives a zero row (the CPU op throws BadInput; ids live on the
// device here, so the caller checks them on the host before upload).
void launch_embedding_forward(cudaStream_t stream, float* out, const int* ids, const float* table, int M, int C);
// out (n) = a + b (out may alias a or b).
void launch_add_forward(cudaStream_t stream, float* out, const float* a, const float* b, int64_t n);

// logits.cu
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

// transfer_ops.cu: the small steps between the big ops (Backend::scatter_rows .. embedding_backward). Products and
// sums are written with __fmul_rn / __fadd_rn, which nvcc never contracts into an FMA, so every output equals the
// CPU's fp32 arithmetic bit for bit.
// dst row rows[r] = src row r (M rows of `width` floats): KV-cache writes. A negative rows[r] writes nothing.
void launch_scatter_rows(cudaStream_t stream, float* dst, const int* rows, const float* src, int M, int width);
// dst row r = src row rows[r] (r < M). A negative rows[r] gives a zero row.
void launch_gather_rows(cudaStream_t stream, float* dst, const float* src, const int* rows, int M, int width);
// y (n) += a * x, the product rounded before the add (no FMA).
void launch_axpy(cudaStream_t stream, float* y, const float* x, float a, int64_t n);
// out (n) = a * x (out may alias x).
void launch_scale(cudaStream_t stream, float* out, const float* x, float a, int64_t n);
// out (n) = kept[i] ? x * keep_scale : 0 (inverted dropout; the mask kept (n) is made on the host).
void launch_dropout_forward(cudaStream_t stream, float* out, const float* x, const uint8_t* kept, float keep_scale,
                            int64_t n);
// dx (n) += kept[i] ? dout * keep_scale : 0.
void launch_dropout_backward(cudaStream_t stream, float* dx, const float* dout, const uint8_t* kept, float keep_scale,
                             int64_t n);
// dtable (V,C) row ids[m] += dout (M,C) row m, each element's rows added in order m = 0..M-1 (no atomics).
// A negative ids[m] is skipped (the caller validates ids on the host).
void launch_embedding_backward(cudaStream_t stream, float* dtable, const float* dout, const int* ids, int M, int C);


// optimizer_ops.cu: the optimizer step (Backend::l2_norm .. adamw_bnb8bit_step), per-element arithmetic of
// train/adam_math.h compiled for the device, so every output equals the CPU backend's bit for bit; only l2_norm sums
// its (exact) double squares in another fixed order than the CPU, ~1e-16 relative before the rounding to fp32.
constexpr int kL2NormPartials = 1024;  // doubles of scratch launch_l2_norm needs
// out (1) = fp32 sqrt of the sum of x (n) squared, in double: up to kL2NormPartials fixed-order block partial sums
// (written to `partials`, device scratch), then one block adds them in order. n == 0 writes 0.
void launch_l2_norm(cudaStream_t stream, float* out, const float* x, int64_t n, double* partials);
// torch AdamW: param, exp_avg, exp_avg_sq (n) updated in place from grad (n).
void launch_adamw_step(cudaStream_t stream, float* param, float* exp_avg, float* exp_avg_sq, const float* grad,
                       const AdamWStepScalars& s, int64_t n);
// bnb's 32-bit AdamW kernel on fp32 state m, v (n).
void launch_adamw_bnb32_step(cudaStream_t stream, float* param, float* m, float* v, const float* grad,
                             const BnbAdamStepScalars& s, int64_t n);
// bnb's 8-bit blockwise AdamW: codes state1, state2 (n), block scales absmax1, absmax2 (ceil(n/2048)); qmaps (2,256)
// holds the signed then the unsigned dynamic map on the device.
void launch_adamw_bnb8bit_step(cudaStream_t stream, float* param, uint8_t* state1, uint8_t* state2, float* absmax1,
                               float* absmax2, const float* grad, const float* qmaps, const BnbAdamStepScalars& s,
                               int64_t n);

}  // namespace dpo::cuda

