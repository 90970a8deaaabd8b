// The one compute interface every backend implements (CPU now; CUDA behind the same calls).
// The model code runs the decoder only through these ops, so a backend is a drop-in.
// Buffers passed to a backend live where that backend computes (host memory for the CPU backend).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dpo {

struct Nf4Matrix;

enum class BackendKind { Cpu, Cuda };

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
  virtual void rmsnorm(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps) = 0;
  virtual void rope(float* x, const int* pos, int M, int H, int HD, float theta) = 0;
  virtual void attention(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                         const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD) = 0;
  virtual void swiglu(float* out, const float* gate, const float* up, int M, int F) = 0;
  virtual void embedding(float* out, const int* ids, const float* table, int M, int C) = 0;
  virtual void add(float* out, const float* a, const float* b, int64_t n) = 0;
  virtual void logsoftmax_gather(float* logp, float* lse, const float* logits, const int* target, int M, int V) = 0;
  virtual void argmax_rows(int* out, const float* x, int M, int V) = 0;

  // Backward ops (training): gradients accumulate into d* outputs unless the op says it overwrites.
  virtual void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                const float* rstd, int M, int C) = 0;
  virtual void rope_backward(float* dx, const int* pos, int M, int H, int HD, float theta) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs,
                                  const float* q, const float* k, const float* v, int B, int T, int S, int NH,
                                  int NKV, int HD) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                               int M, int F) = 0;
  virtual void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                          const int* target, int M, int V) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend on device 0; throws E_NO_CUDA (with the reason) when the engine has no CUDA build or no GPU.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace dpo
