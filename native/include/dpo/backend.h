// The one compute interface every backend implements (CPU now; CUDA behind the same calls).
// The model code runs the decoder only through these ops, so a backend is a drop-in.
// Buffers passed to a backend live where that backend computes (host memory for the CPU backend).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dpo/errors.h"

namespace dpo {

struct Nf4Matrix;
struct Bf16ArgmaxSketch;  // cpu/bf16_argmax_sketch.h

// The RoPE frequencies of one call, computed on the host from the config (model/rope_table.h): inv_freq (HD/2) and
// the factor transformers multiplies cos and sin by (yarn's attention factor; 1 otherwise).
struct RopeTable {
  std::vector<float> inv_freq;
  float attention_scaling = 1.0f;

  bool operator==(const RopeTable& o) const {
    return inv_freq == o.inv_freq && attention_scaling == o.attention_scaling;
  }
};
// Throws E_BAD_INPUT unless `t` has HD/2 frequencies for an even HD (every backend checks before a rope op).
void check_rope_table(const RopeTable& t, int HD);

enum class BackendKind { Cpu, Cuda };

// The scalars of one optimizer update of one tensor, computed on the host from the hyperparameters and the step
// count exactly as the reference does (train/optimizer.h: adamw_scalars, bnb_adam_scalars), so that every backend
// applies the same fp32 values with the same per-element arithmetic (train/adam_math.h).
// torch.optim.AdamW (docs/reference/optimizer.md#torch-adamw): p = p*decay (when apply_decay); m = lerp(m, g, w1); v =
// v*beta2 + (w2*g)*g; p += (neg_step*m) / (sqrt(v)/bc2_sqrt + eps).
struct AdamWStepScalars {
  float decay = 1.0f;        // 1 - lr*wd, applied BEFORE the step
  bool apply_decay = false;  // wd != 0
  float w1 = 0.0f;           // 1 - beta1
  float beta2 = 0.0f, w2 = 0.0f;
  float neg_step = 0.0f;  // -(lr / (1 - beta1^t))
  float bc2_sqrt = 1.0f;  // sqrt(1 - beta2^t)
  float eps = 0.0f;
};
// bitsandbytes 0.43.1 AdamW (docs/reference/optimizer.md), its 32-bit and 8-bit blockwise kernels alike:
// m = m*beta1 + w1*g; v = v*beta2 + w2*g*g; p += step_size * (m / (sqrt(v) + eps_term)); p *= decay when apply_decay.
struct BnbAdamStepScalars {
  float beta1 = 0.0f, beta2 = 0.0f, w1 = 0.0f, w2 = 0.0f;  // w = 1 - beta
  float step_size = 0.0f;    // -lr * corr2 / corr1, corr1 = 1 - beta1^t, corr2 = sqrt(1 - beta2^t)
  float eps_term = 0.0f;     // corr2 * eps
  float decay = 1.0f;        // 1 - lr*wd, applied AFTER the step
  bool apply_decay = false;  // wd > 0
};

// bnb's blocks of the 8-bit optimizer state (BLOCKSIZE_2STATE) and the size below which it keeps fp32 state.
constexpr int64_t kAdam8bitBlockSize = 2048;
constexpr int64_t kAdam8bitMinSize = 4096;

// Ints per query row of Backend::attention_key_skip's key_skip: two runs of hidden keys, [begin, end) each.
constexpr int kKeySkipInts = 4;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  virtual std::string describe() const = 0;  // e.g. "cpu (16 threads)"

  // Memory where this backend computes (host memory for the CPU backend). alloc throws E_OOM with advice.
  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  virtual void upload(void* dst, const void* src_host, size_t bytes) = 0;
  virtual void download(void* dst_host, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}

  // Shapes and semantics as in src/cpu/ops.h (the CPU reference), argument order outputs -> inputs -> weights -> dims.
  virtual void matmul(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) = 0;
  virtual void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w,
                               int M, int K, int N) = 0;
  virtual void matmul_nf4(float* out, const float* x, const Nf4Matrix& w, const float* bias, int M) = 0;
  virtual void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M) = 0;
  // matmul_nf4 of `count` matrices (same K) against one x: outs[i] = x . ws[i]^T + biases[i] (biases null, or
  // entries null where absent). Each output as matmul_nf4 gives it; a backend may share the work of the common input.
  virtual void matmul_nf4_many(float* const* outs, const float* x, const Nf4Matrix* const* ws,
                               const float* const* biases, int count, int M) {
    for (int i = 0; i < count; i++) matmul_nf4(outs[i], x, *ws[i], biases ? biases[i] : nullptr, M);
  }
  // Products with bf16 weights (uint16_t: a bf16 checkpoint's lm_head, docs/cpu-kernels.md): the arithmetic of matmul
  // and of matmul_backward's dx on the exactly widened fp32 weights, bit for bit, from half the bytes. Only called
  // when has_bf16_matmul(); other backends are given the fp32 weights.
  virtual bool has_bf16_matmul() const { return false; }
  virtual void matmul_bf16(float* out, const float* x, const uint16_t* w, int M, int K, int N) {
    (void)out, (void)x, (void)w, (void)M, (void)K, (void)N;
  }
  virtual void matmul_bf16_backward_input(float* dx, const float* dout, const uint16_t* w, int M, int K, int N) {
    (void)dx, (void)dout, (void)w, (void)M, (void)K, (void)N;
  }
  // Greedy tokens from bf16 weights without every logit (docs/cpu-kernels.md#greedy-tokens-from-an-int8-sketch):
  // sketch_bf16_argmax builds what the backend keeps beside w (N,K) for it, once (null: it has no such path, or w
  // holds inf or NaN); matmul_bf16_argmax then writes out (M) = argmax_rows of matmul_bf16(x, w), the same indices,
  // or returns false having done nothing the caller may use (then it runs those two ops).
  virtual std::shared_ptr<const Bf16ArgmaxSketch> sketch_bf16_argmax(const uint16_t* w, int K, int N) {
    (void)w, (void)K, (void)N;
    return nullptr;
  }
  virtual bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& sketch, int M,
                                  int K, int N) {
    (void)out, (void)x, (void)w, (void)sketch, (void)M, (void)K, (void)N;
    return false;
  }
  // Makes `w` resident now rather than at its first use (a GPU uploads it once; the load time then includes it).
  virtual void prepare_nf4(const Nf4Matrix& w) { (void)w; }
  virtual void rmsnorm(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps) = 0;
  virtual void rope(float* x, const int* pos, int M, int H, int HD, const RopeTable& table) = 0;
  virtual void attention(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                         const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD) = 0;
  // The same attention with up to two hidden runs of keys per query row (prompt-prefix sharing,
  // docs/performance.md#prompt-prefix-sharing): row r = (b, t) does not see keys s in [key_skip[4r], key_skip[4r+1])
  // or [key_skip[4r+2], key_skip[4r+3]) (ordered, disjoint; an empty run has equal bounds), and its causal bound moves
  // past them (keys s <= qpos[r] + the two runs' lengths); visible keys are summed in increasing s as attention()
  // does. Only backends that answer has_attention_key_skip() implement it; callers keep the plain layout elsewhere.
  virtual bool has_attention_key_skip() const { return false; }
  virtual void attention_key_skip(float* out, float* probs, const float* q, const float* k, const float* v,
                                  const int* qpos, const uint8_t* key_valid, const int* key_skip, int B, int T, int S,
                                  int NH, int NKV, int HD) {
    (void)out, (void)probs, (void)q, (void)k, (void)v, (void)qpos, (void)key_valid, (void)key_skip, (void)B, (void)T,
        (void)S, (void)NH, (void)NKV, (void)HD;
    throw EngineError(ErrorCode::Internal, "attention_key_skip is not implemented by this backend");
  }
  virtual void swiglu(float* out, const float* gate, const float* up, int M, int F) = 0;
  virtual void embedding(float* out, const int* ids, const float* table, int M, int C) = 0;
  virtual void add(float* out, const float* a, const float* b, int64_t n) = 0;
  virtual void logsoftmax_gather(float* logp, float* lse, const float* logits, const int* target, int M, int V) = 0;
  virtual void argmax_rows(int* out, const float* x, int M, int V) = 0;

  // Backward ops (training): gradients accumulate into d* outputs unless the op says it overwrites.
  virtual void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                const float* rstd, int M, int C) = 0;
  virtual void rope_backward(float* dx, const int* pos, int M, int H, int HD, const RopeTable& table) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs,
                                  const float* q, const float* k, const float* v, int B, int T, int S, int NH, int NKV,
                                  int HD) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M,
                               int F) = 0;
  // The same two ops into outputs whose contents are undefined (fresh scratch): each output gets what zero-filling it
  // and accumulating gives, bit for bit. By default exactly that (src/core/backend_overwrite_ops.cpp); a backend may
  // leave out the zero fill and its pass over memory (the CPU does, docs/performance.md#the-steps-between-the-matmuls).
  virtual void matmul_nf4_backward_input_overwrite(float* dx, const float* dout, const Nf4Matrix& w, int M);
  virtual void swiglu_backward_overwrite(float* dgate, float* dup, const float* dout, const float* gate,
                                         const float* up, int M, int F);
  virtual void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                          const int* target, int M, int V) = 0;

  // ---- The small steps between the big ops, so that activations never leave the backend's memory. ----
  // Device-to-device copy and zero fill (bytes).
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  // dst row rows[r] = src row r (r < M, rows of `width` floats): KV-cache writes.
  virtual void scatter_rows(float* dst, const int* rows, const float* src, int M, int width) = 0;
  // dst row r = src row rows[r] (r < M): the last prompt position of each sequence.
  virtual void gather_rows(float* dst, const float* src, const int* rows, int M, int width) = 0;
  // y[i] += a * x[i], the product rounded to fp32 before the add (no fused multiply-add): LoRA's result + delta*scale.
  virtual void axpy(float* y, const float* x, float a, int64_t n) = 0;
  // out[i] = a * x[i] (out may alias x).
  virtual void scale(float* out, const float* x, float a, int64_t n) = 0;
  // Inverted dropout with a mask made on the host: out[i] = kept[i] ? x[i] * keep_scale : 0.
  virtual void dropout(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n) = 0;
  // Its backward: dx[i] += dout[i] * keep_scale where kept[i]; dropped elements are left untouched.
  virtual void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n) = 0;
  // dtable[ids[m]] += dout[m] (M rows of C), rows added in order m = 0..M-1 so the sum is deterministic.
  virtual void embedding_backward(float* dtable, const float* dout, const int* ids, int M, int C) = 0;
  // Decoding against a KV cache: row r of q (M, NH*HD) attends kcache/vcache (Bc, S, NKV*HD) sequence seq[r] at
  // positions 0..pos[r], with the arithmetic of attention(B=1, T=1, S=pos[r]+1, qpos=pos[r]) on that sequence.
  virtual void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int* seq,
                                const int* pos, int M, int S, int NH, int NKV, int HD) = 0;

  // ---- The optimizer step (docs/reference/optimizer.md): gradients, weights and state stay in the backend. ----
  // Every element's arithmetic is that of train/adam_math.h (the CPU reference), on scalars the host computed.
  // out (1 float in backend memory) = the fp32 L2 norm of x (n): torch clip_grad_norm_'s per-tensor norm. The sum of
  // squares is taken in double in a fixed order (no float atomics), then sqrt and rounded to fp32 once; the host
  // combines the per-tensor norms (train/optimizer.h norm_of_norms). n == 0 gives 0.
  virtual void l2_norm(float* out, const float* x, int64_t n) = 0;
  // torch AdamW: param, exp_avg, exp_avg_sq (n) updated in place from grad (n).
  virtual void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWStepScalars& s,
                          int64_t n) = 0;
  // bnb's 32-bit AdamW kernel (tensors below kAdam8bitMinSize): fp32 state m, v (n); non-finite g flows through.
  virtual void adamw_bnb32_step(float* param, float* m, float* v, const float* grad, const BnbAdamStepScalars& s,
                                int64_t n) = 0;
  // bnb's 8-bit blockwise AdamW kernel: codes state1 (n, signed dynamic map) and state2 (n, unsigned dynamic map) with
  // one fp32 scale per kAdam8bitBlockSize block in absmax1, absmax2 (ceil(n / 2048)); the maps are those of
  // quant/nf4.h (docs/reference/nf4.md#the-dynamic-8-bit-map), held by the backend. A non-finite g zeroes its m and v
  // and leaves its param untouched.
  virtual void adamw_bnb8bit_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                                  const float* grad, const BnbAdamStepScalars& s, int64_t n) = 0;

  // Bytes of this backend's memory held by alloc() now and at most since the last reset (benchmarks, errors).
  virtual uint64_t bytes_in_use() const = 0;
  virtual uint64_t peak_bytes() const = 0;
  virtual void reset_peak() = 0;
  // True when alloc() memory is host memory that host code may read (the CPU backend): mirrors can then alias.
  virtual bool shares_host_memory() const { return false; }

  // ---- Recorded work (CUDA graphs). Decoding repeats the same ops on the same buffers for every token, and at 7B
  // launching ~700 kernels one by one costs about as much as running them. Between begin_capture() and
  // end_capture() ops are recorded, not run; replay() runs the recording again. Memory freed while recording stays
  // with the recording (its ops use it at every replay). No upload, download or synchronize may happen while
  // recording. A backend that cannot record returns false from begin_capture(); the caller then runs the ops itself.
  virtual bool begin_capture() { return false; }
  // The recording, or null when it could not be made (nothing was run either way).
  virtual std::shared_ptr<void> end_capture() { return nullptr; }
  // Ends a recording that an error interrupted, discarding it.
  virtual void abort_capture() {}
  virtual void replay(const std::shared_ptr<void>& recording) { (void)recording; }
};

std::unique_ptr<Backend> make_cpu_backend();
// The CPU backend with its alloc() memory unreadable outside backend calls (mprotect): a test backend that makes any
// host code touching device memory crash, so the model path is checked for the CUDA backend on machines without one.
std::unique_ptr<Backend> make_guarded_cpu_backend();
// The CUDA backend on device 0; throws E_NO_CUDA (with the reason) when the engine has no CUDA build or no GPU.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace dpo
