// The fault-injecting test backend (cpu/fault_injecting_backend.h): forwards every call to the inner backend and
// spoils one op, after it ran (a wrong first output element, read and written back through download/upload so the
// guarded backend's memory rules hold) or instead of running it (E_DEVICE_FAULT).
#include "cpu/fault_injecting_backend.h"

#include <cstdint>
#include <utility>

#include "dpo/errors.h"

namespace dpo {
namespace {

class FaultInjectingBackend final : public Backend {
 public:
  FaultInjectingBackend(std::unique_ptr<Backend> inner, std::string kernel, InjectedFault fault)
      : in_(std::move(inner)), kernel_(std::move(kernel)), fault_(fault) {}

  BackendKind kind() const override { return in_->kind(); }
  std::string describe() const override {
    return fault_ == InjectedFault::None ? in_->describe() : in_->describe() + " [injected fault in " + kernel_ + "]";
  }
  void* alloc(size_t bytes) override { return in_->alloc(bytes); }
  void free(void* p) override { in_->free(p); }
  void upload(void* dst, const void* src_host, size_t bytes) override { in_->upload(dst, src_host, bytes); }
  void download(void* dst_host, const void* src, size_t bytes) override { in_->download(dst_host, src, bytes); }
  void synchronize() override { in_->synchronize(); }
  uint64_t bytes_in_use() const override { return in_->bytes_in_use(); }
  uint64_t peak_bytes() const override { return in_->peak_bytes(); }
  void reset_peak() override { in_->reset_peak(); }
  bool shares_host_memory() const override { return in_->shares_host_memory(); }
  bool begin_capture() override { return in_->begin_capture(); }
  std::shared_ptr<void> end_capture() override { return in_->end_capture(); }
  void abort_capture() override { in_->abort_capture(); }
  void replay(const std::shared_ptr<void>& recording) override { in_->replay(recording); }
  void prepare_nf4(const Nf4Matrix& w) override { in_->prepare_nf4(w); }

  void matmul(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) override {
    before("matmul");
    in_->matmul(out, x, w, bias, M, K, N);
    after("matmul", out);
  }
  void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int M,
                       int K, int N) override {
    before("matmul_backward");
    in_->matmul_backward(dx, dw, dbias, dout, x, w, M, K, N);
    after("matmul_backward", dx ? dx : dw ? dw : dbias);
  }
  void matmul_nf4(float* out, const float* x, const Nf4Matrix& w, const float* bias, int M) override {
    before("matmul_nf4");
    in_->matmul_nf4(out, x, w, bias, M);
    after("matmul_nf4", out);
  }
  void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M) override {
    before("matmul_nf4_backward_input");
    in_->matmul_nf4_backward_input(dx, dout, w, M);
    after("matmul_nf4_backward_input", dx);
  }
  bool has_bf16_matmul() const override { return in_->has_bf16_matmul(); }
  void matmul_bf16(float* out, const float* x, const uint16_t* w, int M, int K, int N) override {
    before("matmul_bf16");
    in_->matmul_bf16(out, x, w, M, K, N);
    after("matmul_bf16", out);
  }
  void matmul_bf16_backward_input(float* dx, const float* dout, const uint16_t* w, int M, int K, int N) override {
    before("matmul_bf16_backward_input");
    in_->matmul_bf16_backward_input(dx, dout, w, M, K, N);
    after("matmul_bf16_backward_input", dx);
  }
  std::shared_ptr<const Bf16ArgmaxSketch> sketch_bf16_argmax(const uint16_t* w, int K, int N) override {
    return in_->sketch_bf16_argmax(w, K, N);
  }
  bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& sketch, int M, int K,
                          int N) override {
    before("matmul_bf16_argmax");
    if (!in_->matmul_bf16_argmax(out, x, w, sketch, M, K, N)) return false;
    if (hits("matmul_bf16_argmax")) {  // the first token one off, as argmax_rows'
      int v = 0;
      in_->download(&v, out, sizeof v);
      v += 1;
      in_->upload(out, &v, sizeof v);
    }
    return true;
  }
  void rmsnorm(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps) override {
    before("rmsnorm");
    in_->rmsnorm(out, rstd, x, w, M, C, eps);
    after("rmsnorm", out);
  }
  void rope(float* x, const int* pos, int M, int H, int HD, const RopeTable& table) override {
    before("rope");
    in_->rope(x, pos, M, H, HD, table);
    after("rope", x);
  }
  void attention(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                 const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD) override {
    before("attention");
    in_->attention(out, probs, q, k, v, qpos, key_valid, B, T, S, NH, NKV, HD);
    after("attention", out);
  }
  bool has_attention_key_skip() const override { return in_->has_attention_key_skip(); }
  void attention_key_skip(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                          const uint8_t* key_valid, const int* key_skip, int B, int T, int S, int NH, int NKV,
                          int HD) override {
    before("attention");
    in_->attention_key_skip(out, probs, q, k, v, qpos, key_valid, key_skip, B, T, S, NH, NKV, HD);
    after("attention", out);
  }
  void swiglu(float* out, const float* gate, const float* up, int M, int F) override {
    before("swiglu");
    in_->swiglu(out, gate, up, M, F);
    after("swiglu", out);
  }
  void embedding(float* out, const int* ids, const float* table, int M, int C) override {
    before("embedding");
    in_->embedding(out, ids, table, M, C);
    after("embedding", out);
  }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    before("add");
    in_->add(out, a, b, n);
    after("add", out);
  }
  void logsoftmax_gather(float* logp, float* lse, const float* logits, const int* target, int M, int V) override {
    before("logsoftmax_gather");
    in_->logsoftmax_gather(logp, lse, logits, target, M, V);
    after("logsoftmax_gather", logp);
  }
  void argmax_rows(int* out, const float* x, int M, int V) override {
    before("argmax_rows");
    in_->argmax_rows(out, x, M, V);
    if (hits("argmax_rows")) {
      int v = 0;
      in_->download(&v, out, sizeof v);
      v += 1;
      in_->upload(out, &v, sizeof v);
    }
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                        int M, int C) override {
    before("rmsnorm_backward");
    in_->rmsnorm_backward(dx, dw, dout, x, w, rstd, M, C);
    after("rmsnorm_backward", dx ? dx : dw);
  }
  void rope_backward(float* dx, const int* pos, int M, int H, int HD, const RopeTable& table) override {
    before("rope_backward");
    in_->rope_backward(dx, pos, M, H, HD, table);
    after("rope_backward", dx);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                          const float* k, const float* v, int B, int T, int S, int NH, int NKV, int HD) override {
    before("attention_backward");
    in_->attention_backward(dq, dk, dv, dout, probs, q, k, v, B, T, S, NH, NKV, HD);
    after("attention_backward", dq ? dq : dk ? dk : dv);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M,
                       int F) override {
    before("swiglu_backward");
    in_->swiglu_backward(dgate, dup, dout, gate, up, M, F);
    after("swiglu_backward", dgate ? dgate : dup);
  }
  void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                  const int* target, int M, int V) override {
    before("logsoftmax_gather_backward");
    in_->logsoftmax_gather_backward(dlogits, dlogp, logits, lse, target, M, V);
    after("logsoftmax_gather_backward", dlogits);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    before("copy");
    in_->copy(dst, src, bytes);
    if (bytes >= sizeof(float)) after("copy", static_cast<float*>(dst));
  }
  void fill_zero(void* dst, size_t bytes) override {
    before("fill_zero");
    in_->fill_zero(dst, bytes);
    if (bytes >= sizeof(float)) after("fill_zero", static_cast<float*>(dst));
  }
  void scatter_rows(float* dst, const int* rows, const float* src, int M, int width) override {
    before("scatter_rows");
    in_->scatter_rows(dst, rows, src, M, width);
    after("scatter_rows", dst);
  }
  void gather_rows(float* dst, const float* src, const int* rows, int M, int width) override {
    before("gather_rows");
    in_->gather_rows(dst, src, rows, M, width);
    after("gather_rows", dst);
  }
  void axpy(float* y, const float* x, float a, int64_t n) override {
    before("axpy");
    in_->axpy(y, x, a, n);
    after("axpy", y);
  }
  void scale(float* out, const float* x, float a, int64_t n) override {
    before("scale");
    in_->scale(out, x, a, n);
    after("scale", out);
  }
  void dropout(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n) override {
    before("dropout");
    in_->dropout(out, x, kept, keep_scale, n);
    after("dropout", out);
  }
  void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n) override {
    before("dropout_backward");
    in_->dropout_backward(dx, dout, kept, keep_scale, n);
    after("dropout_backward", dx);
  }
  void embedding_backward(float* dtable, const float* dout, const int* ids, int M, int C) override {
    before("embedding_backward");
    in_->embedding_backward(dtable, dout, ids, M, C);
    after("embedding_backward", dtable);
  }
  void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int* seq,
                        const int* pos, int M, int S, int NH, int NKV, int HD) override {
    before("attention_decode");
    in_->attention_decode(out, q, kcache, vcache, seq, pos, M, S, NH, NKV, HD);
    after("attention_decode", out);
  }
  void l2_norm(float* out, const float* x, int64_t n) override {
    before("l2_norm");
    in_->l2_norm(out, x, n);
    after("l2_norm", out);
  }
  void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWStepScalars& s,
                  int64_t n) override {
    before("adamw_step");
    in_->adamw_step(param, exp_avg, exp_avg_sq, grad, s, n);
    after("adamw_step", param);
  }
  void adamw_bnb32_step(float* param, float* m, float* v, const float* grad, const BnbAdamStepScalars& s,
                        int64_t n) override {
    before("adamw_bnb32_step");
    in_->adamw_bnb32_step(param, m, v, grad, s, n);
    after("adamw_bnb32_step", param);
  }
  void adamw_bnb8bit_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                          const float* grad, const BnbAdamStepScalars& s, int64_t n) override {
    before("adamw_bnb8bit_step");
    in_->adamw_bnb8bit_step(param, state1, state2, absmax1, absmax2, grad, s, n);
    after("adamw_bnb8bit_step", param);
  }

 private:
  bool hits(const char* op) const { return fault_ == InjectedFault::Corrupt && kernel_ == op; }
  void before(const char* op) const {
    if (fault_ == InjectedFault::Raise && kernel_ == op)
      fail(ErrorCode::DeviceFault, std::string("an illegal memory access in ") + op + " (injected by a test)");
  }
  // Moves the first output element well outside any tolerance (x -> 1.5x + 1).
  void after(const char* op, float* out) {
    if (!hits(op) || !out) return;
    float v = 0;
    in_->download(&v, out, sizeof v);
    v = v * 1.5f + 1.0f;
    in_->upload(out, &v, sizeof v);
  }

  std::unique_ptr<Backend> in_;
  std::string kernel_;
  InjectedFault fault_;
};

}  // namespace

std::unique_ptr<Backend> make_fault_injecting_backend(std::unique_ptr<Backend> inner, std::string kernel,
                                                      InjectedFault fault) {
  return std::make_unique<FaultInjectingBackend>(std::move(inner), std::move(kernel), fault);
}

namespace {

struct TestGpuSpec {
  InjectedFault fault = InjectedFault::None;
  std::string kernel;
};

TestGpuSpec parse_test_gpu(const std::string& spec) {
  TestGpuSpec s;
  if (spec == "cpu") return s;
  for (const auto& [prefix, fault] : {std::pair<std::string, InjectedFault>{"cpu:corrupt=", InjectedFault::Corrupt},
                                      std::pair<std::string, InjectedFault>{"cpu:raise=", InjectedFault::Raise}})
    if (spec.compare(0, prefix.size(), prefix) == 0 && spec.size() > prefix.size()) {
      s.fault = fault;
      s.kernel = spec.substr(prefix.size());
      return s;
    }
  fail(ErrorCode::BadInput,
       "DPO_TEST_GPU must be cpu, cpu:corrupt=KERNEL or cpu:raise=KERNEL (a test hook), not '" + spec + "'");
}

}  // namespace

std::unique_ptr<Backend> make_test_gpu_backend(const std::string& spec) {
  const TestGpuSpec s = parse_test_gpu(spec);
  return make_fault_injecting_backend(make_guarded_cpu_backend(), s.kernel, s.fault);
}

std::string test_gpu_device_name(const std::string& spec) {
  parse_test_gpu(spec);
  return "test GPU (DPO_TEST_GPU=" + spec + ")";
}

}  // namespace dpo
