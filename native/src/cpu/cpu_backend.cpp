// The CPU backend: the Backend interface over the reference ops of cpu/ops.h (all cores, vectorised loops).
#include "dpo/backend.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"

namespace dpo {
namespace {

class CpuBackend final : public Backend {
 public:
  BackendKind kind() const override { return BackendKind::Cpu; }
  std::string describe() const override { return "cpu (" + std::to_string(cpu_thread_count()) + " threads)"; }

  void* alloc(size_t bytes) override {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) fail(ErrorCode::Oom, "out of memory allocating " + std::to_string(bytes >> 20) + " MiB on the CPU: use a smaller model or batch");
    return p;
  }
  void free(void* p) override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  void matmul(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) override {
    cpu::matmul_forward(out, x, w, bias, M, K, N);
  }
  void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int M,
                       int K, int N) override {
    cpu::matmul_backward(dx, dw, dbias, dout, x, w, M, K, N);
  }
  void matmul_nf4(float* out, const float* x, const Nf4Matrix& w, const float* bias, int M) override {
    cpu::matmul_nf4_forward(out, x, w, bias, M);
  }
  void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M) override {
    cpu::matmul_nf4_backward_input(dx, dout, w, M);
  }
  void rmsnorm(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps) override {
    cpu::rmsnorm_forward(out, rstd, x, w, M, C, eps);
  }
  void rope(float* x, const int* pos, int M, int H, int HD, float theta) override {
    cpu::rope_forward(x, pos, M, H, HD, theta);
  }
  void attention(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                 const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD) override {
    cpu::attention_forward(out, probs, q, k, v, qpos, key_valid, B, T, S, NH, NKV, HD);
  }
  void swiglu(float* out, const float* gate, const float* up, int M, int F) override {
    cpu::swiglu_forward(out, gate, up, M, F);
  }
  void embedding(float* out, const int* ids, const float* table, int M, int C) override {
    cpu::embedding_forward(out, ids, table, M, C);
  }
  void add(float* out, const float* a, const float* b, int64_t n) override { cpu::add_forward(out, a, b, n); }
  void logsoftmax_gather(float* logp, float* lse, const float* logits, const int* target, int M, int V) override {
    cpu::logsoftmax_gather_forward(logp, lse, logits, target, M, V);
  }
  void argmax_rows(int* out, const float* x, int M, int V) override { cpu::argmax_rows(out, x, M, V); }

  void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                        int M, int C) override {
    cpu::rmsnorm_backward(dx, dw, dout, x, w, rstd, M, C);
  }
  void rope_backward(float* dx, const int* pos, int M, int H, int HD, float theta) override {
    cpu::rope_backward(dx, pos, M, H, HD, theta);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                          const float* k, const float* v, int B, int T, int S, int NH, int NKV, int HD) override {
    cpu::attention_backward(dq, dk, dv, dout, probs, q, k, v, B, T, S, NH, NKV, HD);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M,
                       int F) override {
    cpu::swiglu_backward(dgate, dup, dout, gate, up, M, F);
  }
  void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                  const int* target, int M, int V) override {
    cpu::logsoftmax_gather_backward(dlogits, dlogp, logits, lse, target, M, V);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace dpo
