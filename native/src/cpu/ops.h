// CPU reference ops of the decoder, llm.c style: outputs first, then inputs, then weights, then dims,
// with a shape comment on every tensor argument. fp32 activations; the NF4 matmuls use the reference's
// bf16 numerics (docs/reference/linear4bit.md#prefill-and-training-path: x and dequantized W rounded to bf16, fp32
// accumulation). Every op computes each output row with the same arithmetic whatever M is (batch-invariant results).
#pragma once
#include <cstdint>
#include <string>

#include "../quant/nf4.h"
#include "bf16_argmax_sketch.h"
#include "nf4_product.h"

namespace dpo::cpu {

// The matmuls below run the kernel set chosen once per process (matmul_dispatch.cpp): its name, e.g. "avx2".
const char* matmul_kernel_set();
// The set's name and how it multiplies 4-bit weights on this core (bf16 dot products or FMAs, and why), for
// `dpo-tool info` and the app's backend card: e.g. "avx512, 4-bit products by bf16 dot products (vdpbf16ps at 1.0x an
// FMA's time)". The first call may time the two instructions (under a millisecond).
std::string cpu_kernels_summary();
// Tests: switches to the named set ("avx512", "avx2", "generic"); false when it is not compiled in or this CPU
// cannot run it. Not for use while other threads compute.
bool use_matmul_kernel_set(const char* name);

// out (M,N) = x (M,K) . w (N,K)^T + bias (N, may be null).
void matmul_forward(float* out, const float* x, const float* w, const float* bias, int M, int K, int N);
// dx (M,K) += dout (M,N) . w (N,K);  dw (N,K) += dout^T . x;  dbias (N) += sum_m dout. Each output may be null.
void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int M,
                     int K, int N);
// The same two products with bf16 weights (a bf16 checkpoint's lm_head): each weight is widened exactly, so the
// results equal matmul_forward / matmul_backward's dx on the fp32 copy bit for bit, reading half the bytes.
void matmul_bf16_forward(float* out, const float* x, const uint16_t* w, int M, int K, int N);
void matmul_bf16_backward_input(float* dx, const float* dout, const uint16_t* w, int M, int K, int N);

// out (M,N) = bf16(x) (M,K) . bf16(dequant(W))^T (N,K) + bias (N, may be null), fp32 accumulation.
// Dequantization is fused: no full-precision copy of W is ever made.
void matmul_nf4_forward(float* out, const float* x, const Nf4Matrix& w, const float* bias, int M);
// matmul_nf4_forward of `count` matrices with the same K against one x: bf16(x) is formed once and all their tasks
// share one parallel_for. Every output has the bits matmul_nf4_forward gives it alone.
void matmul_nf4_forward_many(const Nf4Product* products, int count, const float* x, int M);
// dx (M,K) += bf16(dout) (M,N) . bf16(dequant(W)) (N,K): activation gradient only, W is frozen
// (docs/reference/linear4bit.md#backward). `overwrite`: dx's contents are undefined and it gets 0 + the product, the
// bits of zeroing it first, without the zero fill.
void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M, bool overwrite = false);
// What the kernel set keeps per matrix for the decode GEMV, built once at load (the AVX2 set's byte tables, within
// their budget; nothing elsewhere). The results are the same bits with or without it.
void matmul_nf4_prepare(const Nf4Matrix& w);
// out (M) = the greedy tokens of matmul_bf16_forward(x, w): argmax_rows of its logits, the same indices, read
// through w's int8 sketch s (bf16_argmax_sketch.h) and rescoring only the rows its bounds keep. False, with out
// undefined, where x or a logit is out of the range the bounds cover (inf or NaN, near FLT_MAX) or s is not w's
// shape: the caller then runs the two ops.
bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& s, int M, int K, int N);

// out (M,C) = x / sqrt(mean(x^2) + eps) * w; rstd (M) saved for backward (may be null).
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps);
// dx (M,C) += ..., dw (C) += ... (dw may be null).
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int M,
                      int C);

// In-place rotate-half RoPE on x (M, H*HD) where row m sits at position pos[m], with inv_freq (HD/2) from the
// model's RoPE table (model/rope_table.h): angle = pos*inv_freq[j] in fp32, c = cos*scaling, s = sin*scaling,
// x' = x*c + rotate_half(x)*s.
void rope_forward(float* x, const int* pos, int M, int H, int HD, const float* inv_freq, float scaling);
// dx given dout, in place: the transpose rotation.
void rope_backward(float* dx, const int* pos, int M, int H, int HD, const float* inv_freq, float scaling);

// Causal GQA attention against a key/value store.
// q (B,T,NH*HD): queries, already roped; query (b,t) has absolute position qpos[b*T+t].
// k, v (B,S,NKV*HD): keys (roped) and values at positions 0..S-1 of each sequence.
// key_valid (B,S) (may be null = all valid): 0 marks a padded key, which is never attended.
// Query (b,t) attends keys s <= qpos[b*T+t] with key_valid; scale 1/sqrt(HD); softmax in fp32.
// out (B,T,NH*HD). probs (B,NH,T,S) saved for backward when non-null (masked entries 0).
// A query with no attendable key outputs zeros.
// key_skip (B*T, kKeySkipInts) (may be null): query r does not see the keys of its two runs [key_skip[4r],
// key_skip[4r+1]) and [key_skip[4r+2], key_skip[4r+3]) and attends up to s <= qpos[r] + the runs' lengths instead
// (Backend::attention_key_skip, prompt-prefix sharing).
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                       const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD,
                       const int* key_skip = nullptr);
// Accumulates dq (B,T,NH*HD), dk, dv (B,S,NKV*HD) given dout and the saved probs.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, int B, int T, int S, int NH, int NKV, int HD);

// out (M,F) = silu(gate) * up.
void swiglu_forward(float* out, const float* gate, const float* up, int M, int F);
// overwrite: dgate and dup's contents are undefined and they get 0 + the gradient (the bits of zero-filled outputs).
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M, int F,
                     bool overwrite = false);

// out (M,C) = table[ids[m]] (V,C).
void embedding_forward(float* out, const int* ids, const float* table, int M, int C);

// out (M,C) = a + b (residual add; out may alias a).
void add_forward(float* out, const float* a, const float* b, int64_t n);

// Per row m of logits (M,V): logp[m] = log_softmax(logits[m])[target[m]] computed stably in fp32
// with a double-free max/sum-exp; rows with target < 0 give 0. lse (M) saved when non-null.
void logsoftmax_gather_forward(float* logp, float* lse, const float* logits, const int* target, int M, int V);
// dlogits (M,V) = dlogp[m] * (onehot(target) - softmax(logits[m])) (overwrites; rows with target < 0 get 0).
void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                const int* target, int M, int V);

// argmax over each row of x (M,V), first index on ties.
void argmax_rows(int* out, const float* x, int M, int V);

// ---- Moves and small elementwise steps between the big ops (transfer.cpp); semantics as in dpo/backend.h. ----

// dst row rows[r] = src row r (rows of `width` floats), r < M.
void scatter_rows(float* dst, const int* rows, const float* src, int M, int width);
// dst row r = src row rows[r].
void gather_rows(float* dst, const float* src, const int* rows, int M, int width);
// memmove(dst, src, bytes) and memset(dst, 0, bytes), split over the pool when large and (copy) not overlapping.
void copy_bytes(void* dst, const void* src, size_t bytes);
void zero_bytes(void* dst, size_t bytes);
// y += a*x with the product rounded before the add (PEFT's result + lora_out * scaling).
void axpy(float* y, const float* x, float a, int64_t n);
// out = a*x (out may alias x).
void scale(float* out, const float* x, float a, int64_t n);
// out = kept ? x*keep_scale : 0;  dropout_backward: dx += kept ? dout*keep_scale : 0.
void dropout_forward(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n);
void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n);
// dtable[ids[m]] += dout[m] (C floats), m ascending.
void embedding_backward(float* dtable, const float* dout, const int* ids, int M, int C);
// Row r of q (M,NH*HD) attends cache sequence seq[r] (kcache, vcache: (Bc,S,NKV*HD)) at positions 0..pos[r].
void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int* seq,
                      const int* pos, int M, int S, int NH, int NKV, int HD);

}  // namespace dpo::cpu
