// A test backend: the CPU backend whose alloc() memory is mapped PROT_NONE except while a backend call that was
// handed it runs. Host code that reads or writes "device" memory directly crashes, and a backend call handed host
// memory where device memory belongs throws, so the model path is checked for the CUDA backend's rules (activations
// only through ops, explicit upload/download) on machines without a GPU. Selected with DPO_BACKEND=cpu-guarded.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cpu/alloc_stats.h"
#include "dpo/backend.h"
#include "dpo/errors.h"

namespace dpo {
namespace {

class GuardedCpuBackend final : public Backend {
 public:
  GuardedCpuBackend() : cpu_(make_cpu_backend()), page_(size_t(sysconf(_SC_PAGESIZE))) {}
  ~GuardedCpuBackend() override {
    capture_.reset();  // an unfinished recording gives its blocks back first
    for (auto& [start, r] : regions_) munmap(reinterpret_cast<void*>(start), r.mapped);
  }

  BackendKind kind() const override { return BackendKind::Cpu; }
  std::string describe() const override { return "cpu-guarded (" + cpu_->describe() + ")"; }

  void* alloc(size_t bytes) override {
    const size_t mapped = (std::max<size_t>(bytes, 1) + page_ - 1) / page_ * page_;
    void* p = mmap(nullptr, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      fail(ErrorCode::Oom, "cpu-guarded: out of memory allocating " + std::to_string(bytes) + " bytes");
    {
      std::lock_guard<std::mutex> lock(mu_);
      regions_[reinterpret_cast<uintptr_t>(p)] = Region{bytes, mapped};
    }
    stats_.add(bytes);
    return p;
  }
  void free(void* p) override {
    if (!p) return;
    if (capture_) {
      capture_->kept.push_back(p);  // the recorded ops use it again at every replay, as on a GPU
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find(reinterpret_cast<uintptr_t>(p));
    if (it == regions_.end()) fail(ErrorCode::Internal, "cpu-guarded: free of a pointer alloc() did not return");
    stats_.remove(it->second.bytes);
    munmap(p, it->second.mapped);
    regions_.erase(it);
  }
  void upload(void* dst, const void* src_host, size_t bytes) override {
    if (capture_) fail(ErrorCode::Internal, "cpu-guarded: upload while recording (a CUDA graph cannot hold one)");
    Open o(*this, "upload", {dst});
    cpu_->upload(dst, src_host, bytes);
  }
  void download(void* dst_host, const void* src, size_t bytes) override {
    if (capture_) fail(ErrorCode::Internal, "cpu-guarded: download while recording (a CUDA graph cannot hold one)");
    Open o(*this, "download", {src});
    cpu_->download(dst_host, src, bytes);
  }
  // Recording as the CUDA backend does it, so the decode path's use of CUDA graphs is checked on any machine: ops
  // are stored, not run, until replay(); memory freed meanwhile stays with the recording.
  bool begin_capture() override {
    if (capture_) return false;
    capture_ = std::make_shared<Recording>(*this);
    return true;
  }
  std::shared_ptr<void> end_capture() override { return std::move(capture_); }
  void abort_capture() override { capture_.reset(); }
  void replay(const std::shared_ptr<void>& recording) override {
    for (const auto& op : static_cast<Recording*>(recording.get())->ops) op();
  }

  uint64_t bytes_in_use() const override { return stats_.in_use(); }
  uint64_t peak_bytes() const override { return stats_.peak(); }
  void reset_peak() override { stats_.reset_peak(); }

  void matmul(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) override {
    if (recorded([=] { matmul(out, x, w, bias, M, K, N); })) return;
    Open o(*this, "matmul", {out, x, w, bias});
    cpu_->matmul(out, x, w, bias, M, K, N);
  }
  void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int M,
                       int K, int N) override {
    if (recorded([=] { matmul_backward(dx, dw, dbias, dout, x, w, M, K, N); })) return;
    Open o(*this, "matmul_backward", {dx, dw, dbias, dout, x, w});
    cpu_->matmul_backward(dx, dw, dbias, dout, x, w, M, K, N);
  }
  void matmul_nf4(float* out, const float* x, const Nf4Matrix& w, const float* bias, int M) override {
    if (recorded([=, &w] { matmul_nf4(out, x, w, bias, M); })) return;
    Open o(*this, "matmul_nf4", {out, x, bias});  // the NF4 matrix is a host struct the backend uploads itself
    cpu_->matmul_nf4(out, x, w, bias, M);
  }
  void prepare_nf4(const Nf4Matrix& w) override { cpu_->prepare_nf4(w); }  // host data only
  void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M) override {
    if (recorded([=, &w] { matmul_nf4_backward_input(dx, dout, w, M); })) return;
    Open o(*this, "matmul_nf4_backward_input", {dx, dout});
    cpu_->matmul_nf4_backward_input(dx, dout, w, M);
  }
  bool has_bf16_matmul() const override { return true; }
  void matmul_bf16(float* out, const float* x, const uint16_t* w, int M, int K, int N) override {
    if (recorded([=] { matmul_bf16(out, x, w, M, K, N); })) return;
    Open o(*this, "matmul_bf16", {out, x, w});
    cpu_->matmul_bf16(out, x, w, M, K, N);
  }
  void matmul_bf16_backward_input(float* dx, const float* dout, const uint16_t* w, int M, int K, int N) override {
    if (recorded([=] { matmul_bf16_backward_input(dx, dout, w, M, K, N); })) return;
    Open o(*this, "matmul_bf16_backward_input", {dx, dout, w});
    cpu_->matmul_bf16_backward_input(dx, dout, w, M, K, N);
  }
  std::shared_ptr<const Bf16ArgmaxSketch> sketch_bf16_argmax(const uint16_t* w, int K, int N) override {
    Open o(*this, "sketch_bf16_argmax", {w});  // the sketch itself is host data, as a GPU's would be its own
    return cpu_->sketch_bf16_argmax(w, K, N);
  }
  bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& sketch, int M, int K,
                          int N) override {
    if (capture_) return false;  // a recording cannot hold an op whose result decides what runs next
    Open o(*this, "matmul_bf16_argmax", {out, x, w});
    return cpu_->matmul_bf16_argmax(out, x, w, sketch, M, K, N);
  }
  void rmsnorm(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps) override {
    if (recorded([=] { rmsnorm(out, rstd, x, w, M, C, eps); })) return;
    Open o(*this, "rmsnorm", {out, rstd, x, w});
    cpu_->rmsnorm(out, rstd, x, w, M, C, eps);
  }
  void rope(float* x, const int* pos, int M, int H, int HD, const RopeTable& t) override {
    if (recorded([=] { rope(x, pos, M, H, HD, t); })) return;
    Open o(*this, "rope", {x, pos});
    cpu_->rope(x, pos, M, H, HD, t);
  }
  void attention(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                 const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD) override {
    if (recorded([=] { attention(out, probs, q, k, v, qpos, key_valid, B, T, S, NH, NKV, HD); })) return;
    Open o(*this, "attention", {out, probs, q, k, v, qpos, key_valid});
    cpu_->attention(out, probs, q, k, v, qpos, key_valid, B, T, S, NH, NKV, HD);
  }
  bool has_attention_key_skip() const override { return true; }
  void attention_key_skip(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                          const uint8_t* key_valid, const int* key_skip, int B, int T, int S, int NH, int NKV,
                          int HD) override {
    if (recorded([=] { attention_key_skip(out, probs, q, k, v, qpos, key_valid, key_skip, B, T, S, NH, NKV, HD); }))
      return;
    Open o(*this, "attention", {out, probs, q, k, v, qpos, key_valid, key_skip});
    cpu_->attention_key_skip(out, probs, q, k, v, qpos, key_valid, key_skip, B, T, S, NH, NKV, HD);
  }
  void swiglu(float* out, const float* gate, const float* up, int M, int F) override {
    if (recorded([=] { swiglu(out, gate, up, M, F); })) return;
    Open o(*this, "swiglu", {out, gate, up});
    cpu_->swiglu(out, gate, up, M, F);
  }
  void embedding(float* out, const int* ids, const float* table, int M, int C) override {
    if (recorded([=] { embedding(out, ids, table, M, C); })) return;
    Open o(*this, "embedding", {out, ids, table});
    cpu_->embedding(out, ids, table, M, C);
  }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    if (recorded([=] { add(out, a, b, n); })) return;
    Open o(*this, "add", {out, a, b});
    cpu_->add(out, a, b, n);
  }
  void logsoftmax_gather(float* logp, float* lse, const float* logits, const int* target, int M, int V) override {
    if (recorded([=] { logsoftmax_gather(logp, lse, logits, target, M, V); })) return;
    Open o(*this, "logsoftmax_gather", {logp, lse, logits, target});
    cpu_->logsoftmax_gather(logp, lse, logits, target, M, V);
  }
  void argmax_rows(int* out, const float* x, int M, int V) override {
    if (recorded([=] { argmax_rows(out, x, M, V); })) return;
    Open o(*this, "argmax_rows", {out, x});
    cpu_->argmax_rows(out, x, M, V);
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                        int M, int C) override {
    if (recorded([=] { rmsnorm_backward(dx, dw, dout, x, w, rstd, M, C); })) return;
    Open o(*this, "rmsnorm_backward", {dx, dw, dout, x, w, rstd});
    cpu_->rmsnorm_backward(dx, dw, dout, x, w, rstd, M, C);
  }
  void rope_backward(float* dx, const int* pos, int M, int H, int HD, const RopeTable& t) override {
    if (recorded([=] { rope_backward(dx, pos, M, H, HD, t); })) return;
    Open o(*this, "rope_backward", {dx, pos});
    cpu_->rope_backward(dx, pos, M, H, HD, t);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                          const float* k, const float* v, int B, int T, int S, int NH, int NKV, int HD) override {
    if (recorded([=] { attention_backward(dq, dk, dv, dout, probs, q, k, v, B, T, S, NH, NKV, HD); })) return;
    Open o(*this, "attention_backward", {dq, dk, dv, dout, probs, q, k, v});
    cpu_->attention_backward(dq, dk, dv, dout, probs, q, k, v, B, T, S, NH, NKV, HD);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M,
                       int F) override {
    if (recorded([=] { swiglu_backward(dgate, dup, dout, gate, up, M, F); })) return;
    Open o(*this, "swiglu_backward", {dgate, dup, dout, gate, up});
    cpu_->swiglu_backward(dgate, dup, dout, gate, up, M, F);
  }
  void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                  const int* target, int M, int V) override {
    if (recorded([=] { logsoftmax_gather_backward(dlogits, dlogp, logits, lse, target, M, V); })) return;
    Open o(*this, "logsoftmax_gather_backward", {dlogits, dlogp, logits, lse, target});
    cpu_->logsoftmax_gather_backward(dlogits, dlogp, logits, lse, target, M, V);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (recorded([=] { copy(dst, src, bytes); })) return;
    Open o(*this, "copy", {dst, src});
    cpu_->copy(dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override {
    if (recorded([=] { fill_zero(dst, bytes); })) return;
    Open o(*this, "fill_zero", {dst});
    cpu_->fill_zero(dst, bytes);
  }
  void scatter_rows(float* dst, const int* rows, const float* src, int M, int width) override {
    if (recorded([=] { scatter_rows(dst, rows, src, M, width); })) return;
    Open o(*this, "scatter_rows", {dst, rows, src});
    cpu_->scatter_rows(dst, rows, src, M, width);
  }
  void gather_rows(float* dst, const float* src, const int* rows, int M, int width) override {
    if (recorded([=] { gather_rows(dst, src, rows, M, width); })) return;
    Open o(*this, "gather_rows", {dst, src, rows});
    cpu_->gather_rows(dst, src, rows, M, width);
  }
  void axpy(float* y, const float* x, float a, int64_t n) override {
    if (recorded([=] { axpy(y, x, a, n); })) return;
    Open o(*this, "axpy", {y, x});
    cpu_->axpy(y, x, a, n);
  }
  void scale(float* out, const float* x, float a, int64_t n) override {
    if (recorded([=] { scale(out, x, a, n); })) return;
    Open o(*this, "scale", {out, x});
    cpu_->scale(out, x, a, n);
  }
  void dropout(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n) override {
    if (recorded([=] { dropout(out, x, kept, keep_scale, n); })) return;
    Open o(*this, "dropout", {out, x, kept});
    cpu_->dropout(out, x, kept, keep_scale, n);
  }
  void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n) override {
    if (recorded([=] { dropout_backward(dx, dout, kept, keep_scale, n); })) return;
    Open o(*this, "dropout_backward", {dx, dout, kept});
    cpu_->dropout_backward(dx, dout, kept, keep_scale, n);
  }
  void embedding_backward(float* dtable, const float* dout, const int* ids, int M, int C) override {
    if (recorded([=] { embedding_backward(dtable, dout, ids, M, C); })) return;
    Open o(*this, "embedding_backward", {dtable, dout, ids});
    cpu_->embedding_backward(dtable, dout, ids, M, C);
  }
  void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int* seq,
                        const int* pos, int M, int S, int NH, int NKV, int HD) override {
    if (recorded([=] { attention_decode(out, q, kcache, vcache, seq, pos, M, S, NH, NKV, HD); })) return;
    Open o(*this, "attention_decode", {out, q, kcache, vcache, seq, pos});
    cpu_->attention_decode(out, q, kcache, vcache, seq, pos, M, S, NH, NKV, HD);
  }
  void l2_norm(float* out, const float* x, int64_t n) override {
    if (recorded([=] { l2_norm(out, x, n); })) return;
    Open o(*this, "l2_norm", {out, x});
    cpu_->l2_norm(out, x, n);
  }
  void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWStepScalars& s,
                  int64_t n) override {
    if (recorded([=] { adamw_step(param, exp_avg, exp_avg_sq, grad, s, n); })) return;
    Open o(*this, "adamw_step", {param, exp_avg, exp_avg_sq, grad});
    cpu_->adamw_step(param, exp_avg, exp_avg_sq, grad, s, n);
  }
  void adamw_bnb32_step(float* param, float* m, float* v, const float* grad, const BnbAdamStepScalars& s,
                        int64_t n) override {
    if (recorded([=] { adamw_bnb32_step(param, m, v, grad, s, n); })) return;
    Open o(*this, "adamw_bnb32_step", {param, m, v, grad});
    cpu_->adamw_bnb32_step(param, m, v, grad, s, n);
  }
  void adamw_bnb8bit_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                          const float* grad, const BnbAdamStepScalars& s, int64_t n) override {
    if (recorded([=] { adamw_bnb8bit_step(param, state1, state2, absmax1, absmax2, grad, s, n); })) return;
    Open o(*this, "adamw_bnb8bit_step", {param, state1, state2, absmax1, absmax2, grad});
    cpu_->adamw_bnb8bit_step(param, state1, state2, absmax1, absmax2, grad, s, n);
  }

 private:
  struct Recording {
    explicit Recording(GuardedCpuBackend& b) : be(b) {}
    ~Recording() {
      for (void* p : kept) be.free(p);
    }
    GuardedCpuBackend& be;
    std::vector<std::function<void()>> ops;
    std::vector<void*> kept;
  };
  // While recording: stores the op instead of running it.
  template <typename F>
  bool recorded(F&& op) {
    if (!capture_) return false;
    capture_->ops.emplace_back(std::forward<F>(op));
    return true;
  }

  struct Region {
    size_t bytes = 0, mapped = 0;
  };

  // Makes the regions holding `ptrs` readable for one backend call and closes them again afterwards.
  class Open {
   public:
    Open(GuardedCpuBackend& be, const char* op, std::initializer_list<const void*> ptrs) : be_(be) {
      be_.mu_.lock();
      for (const void* p : ptrs) {
        if (!p) continue;
        const uintptr_t a = reinterpret_cast<uintptr_t>(p);
        auto it = be_.regions_.upper_bound(a);
        if (it == be_.regions_.begin() || a > std::prev(it)->first + std::prev(it)->second.bytes) {
          be_.mu_.unlock();
          fail(ErrorCode::Internal,
               std::string("cpu-guarded: ") + op + " was handed host memory where backend memory belongs");
        }
        --it;
        if (std::find(open_.begin(), open_.end(), it->first) == open_.end()) {
          mprotect(reinterpret_cast<void*>(it->first), it->second.mapped, PROT_READ | PROT_WRITE);
          open_.push_back(it->first);
        }
      }
      be_.mu_.unlock();
    }
    ~Open() {
      std::lock_guard<std::mutex> lock(be_.mu_);
      for (uintptr_t start : open_) {
        auto it = be_.regions_.find(start);
        if (it != be_.regions_.end()) mprotect(reinterpret_cast<void*>(start), it->second.mapped, PROT_NONE);
      }
    }
    Open(const Open&) = delete;
    Open& operator=(const Open&) = delete;

   private:
    GuardedCpuBackend& be_;
    std::vector<uintptr_t> open_;
  };

  std::unique_ptr<Backend> cpu_;
  size_t page_;
  mutable std::mutex mu_;
  std::map<uintptr_t, Region> regions_;
  AllocStats stats_;
  std::shared_ptr<Recording> capture_;
};

}  // namespace

std::unique_ptr<Backend> make_guarded_cpu_backend() { return std::make_unique<GuardedCpuBackend>(); }

}  // namespace dpo
