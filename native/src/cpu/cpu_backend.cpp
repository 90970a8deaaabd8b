// The CPU backend: the Backend interface over the reference ops of cpu/ops.h (all cores, vectorised loops).
#include "dpo/backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "cpu/alloc_stats.h"
#include "cpu/block_cache.h"
#include "cpu/nf4_gemv_table_budget.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "train/optimizer.h"

namespace dpo {
namespace {

// Tensors start on a cache line: malloc's 16-byte alignment put every activation row of a kernel 16 bytes into
// a line, so each 16-float load or store of it straddled two lines (docs/cpu-kernels.md#cache-line-aligned-tensors).
void* aligned_block(size_t capacity) {
  constexpr size_t kLine = 64;
  return std::aligned_alloc(kLine, (std::max<size_t>(capacity, 1) + kLine - 1) / kLine * kLine);
}

class CpuBackend final : public Backend {
 public:
  BackendKind kind() const override { return BackendKind::Cpu; }
  std::string describe() const override { return "cpu (" + std::to_string(cpu_thread_count()) + " threads)"; }

  void* alloc(size_t bytes) override {
    const size_t capacity = cache_.capacity_for(bytes);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      p = cache_.take(bytes);
    }
    if (!p) p = aligned_block(capacity);
    if (!p) {  // the cached blocks first, before calling it out of memory
      {
        std::lock_guard<std::mutex> lock(mu_);
        cache_.release_all();
      }
      p = aligned_block(capacity);
    }
    if (!p)
      fail(ErrorCode::Oom,
           "out of memory allocating " + std::to_string(bytes >> 20) + " MiB on the CPU: use a smaller model or batch");
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[p] = Block{bytes, capacity};
    }
    stats_.add(bytes);
    return p;
  }
  void free(void* p) override {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return std::free(p);
    stats_.remove(it->second.bytes);
    const size_t capacity = it->second.capacity;
    sizes_.erase(it);
    if (!cache_.keep(p, capacity)) std::free(p);
  }
  // Mirrors of host data may alias it here (shares_host_memory), so a copy onto itself is a no-op, not UB.
  void upload(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  bool shares_host_memory() const override { return true; }
  uint64_t bytes_in_use() const override { return stats_.in_use(); }
  uint64_t peak_bytes() const override { return stats_.peak(); }
  void reset_peak() override { stats_.reset_peak(); }

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
  void matmul_nf4_many(float* const* outs, const float* x, const Nf4Matrix* const* ws, const float* const* biases,
                       int count, int M) override {
    std::vector<cpu::Nf4Product> products;
    for (int i = 0; i < count; i++) products.push_back({outs[i], ws[i], biases ? biases[i] : nullptr});
    cpu::matmul_nf4_forward_many(products.data(), count, x, M);
  }
  void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M) override {
    cpu::matmul_nf4_backward_input(dx, dout, w, M);
  }
  void matmul_nf4_backward_input_overwrite(float* dx, const float* dout, const Nf4Matrix& w, int M) override {
    cpu::matmul_nf4_backward_input(dx, dout, w, M, /*overwrite=*/true);
  }
  void prepare_nf4(const Nf4Matrix& w) override { cpu::matmul_nf4_prepare(w); }
  bool has_bf16_matmul() const override { return true; }
  void matmul_bf16(float* out, const float* x, const uint16_t* w, int M, int K, int N) override {
    cpu::matmul_bf16_forward(out, x, w, M, K, N);
  }
  void matmul_bf16_backward_input(float* dx, const float* dout, const uint16_t* w, int M, int K, int N) override {
    cpu::matmul_bf16_backward_input(dx, dout, w, M, K, N);
  }
  std::shared_ptr<const Bf16ArgmaxSketch> sketch_bf16_argmax(const uint16_t* w, int K, int N) override {
    // A decode cache like the NF4 byte tables, so within their budget (docs/cpu-kernels.md).
    const int64_t bytes = int64_t(N) * K + int64_t(N) * 12;
    if (!cpu::reserve_nf4_gemv_tables(bytes)) return nullptr;
    std::unique_ptr<Bf16ArgmaxSketch> s;
    try {
      s = sketch_bf16_rows(w, K, N);
    } catch (const std::bad_alloc&) {  // a cache: without it decoding computes every logit as before
      s = nullptr;
    }
    if (!s) {
      cpu::release_nf4_gemv_tables(bytes);
      return nullptr;
    }
    return std::shared_ptr<const Bf16ArgmaxSketch>(s.release(), [bytes](const Bf16ArgmaxSketch* p) {
      delete p;
      cpu::release_nf4_gemv_tables(bytes);
    });
  }
  bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& s, int M, int K,
                          int N) override {
    return cpu::matmul_bf16_argmax(out, x, w, s, M, K, N);
  }
  void rmsnorm(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps) override {
    cpu::rmsnorm_forward(out, rstd, x, w, M, C, eps);
  }
  void rope(float* x, const int* pos, int M, int H, int HD, const RopeTable& t) override {
    check_rope_table(t, HD);
    cpu::rope_forward(x, pos, M, H, HD, t.inv_freq.data(), t.attention_scaling);
  }
  void attention(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                 const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD) override {
    cpu::attention_forward(out, probs, q, k, v, qpos, key_valid, B, T, S, NH, NKV, HD);
  }
  bool has_attention_key_skip() const override { return true; }
  void attention_key_skip(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                          const uint8_t* key_valid, const int* key_skip, int B, int T, int S, int NH, int NKV,
                          int HD) override {
    cpu::attention_forward(out, probs, q, k, v, qpos, key_valid, B, T, S, NH, NKV, HD, key_skip);
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
  void rope_backward(float* dx, const int* pos, int M, int H, int HD, const RopeTable& t) override {
    check_rope_table(t, HD);
    cpu::rope_backward(dx, pos, M, H, HD, t.inv_freq.data(), t.attention_scaling);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                          const float* k, const float* v, int B, int T, int S, int NH, int NKV, int HD) override {
    cpu::attention_backward(dq, dk, dv, dout, probs, q, k, v, B, T, S, NH, NKV, HD);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M,
                       int F) override {
    cpu::swiglu_backward(dgate, dup, dout, gate, up, M, F);
  }
  void swiglu_backward_overwrite(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M,
                                 int F) override {
    cpu::swiglu_backward(dgate, dup, dout, gate, up, M, F, /*overwrite=*/true);
  }
  void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                  const int* target, int M, int V) override {
    cpu::logsoftmax_gather_backward(dlogits, dlogp, logits, lse, target, M, V);
  }

  void copy(void* dst, const void* src, size_t bytes) override { cpu::copy_bytes(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override { cpu::zero_bytes(dst, bytes); }
  void scatter_rows(float* dst, const int* rows, const float* src, int M, int width) override {
    cpu::scatter_rows(dst, rows, src, M, width);
  }
  void gather_rows(float* dst, const float* src, const int* rows, int M, int width) override {
    cpu::gather_rows(dst, src, rows, M, width);
  }
  void axpy(float* y, const float* x, float a, int64_t n) override { cpu::axpy(y, x, a, n); }
  void scale(float* out, const float* x, float a, int64_t n) override { cpu::scale(out, x, a, n); }
  void dropout(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n) override {
    cpu::dropout_forward(out, x, kept, keep_scale, n);
  }
  void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n) override {
    cpu::dropout_backward(dx, dout, kept, keep_scale, n);
  }
  void embedding_backward(float* dtable, const float* dout, const int* ids, int M, int C) override {
    cpu::embedding_backward(dtable, dout, ids, M, C);
  }
  void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int* seq,
                        const int* pos, int M, int S, int NH, int NKV, int HD) override {
    cpu::attention_decode(out, q, kcache, vcache, seq, pos, M, S, NH, NKV, HD);
  }

  // The optimizer step: the reference functions of train/adamw.cpp and adamw_8bit.cpp themselves.
  void l2_norm(float* out, const float* x, int64_t n) override { *out = cpu::l2_norm(x, n); }
  void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWStepScalars& s,
                  int64_t n) override {
    cpu::adamw_step(param, exp_avg, exp_avg_sq, grad, s, n);
  }
  void adamw_bnb32_step(float* param, float* m, float* v, const float* grad, const BnbAdamStepScalars& s,
                        int64_t n) override {
    cpu::adamw_bnb32_step(param, m, v, grad, s, n);
  }
  void adamw_bnb8bit_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                          const float* grad, const BnbAdamStepScalars& s, int64_t n) override {
    cpu::adamw_bnb8bit_step(param, state1, state2, absmax1, absmax2, grad, s, n);
  }

 private:
  // What alloc() was asked for (stats) and what it allocated (the block's size class when it may be cached).
  struct Block {
    size_t bytes, capacity;
  };
  std::mutex mu_;
  std::unordered_map<void*, Block> sizes_;
  // Blocks of 16 MiB and more, above what malloc keeps in its heap; at most 256 MiB of them idle.
  BlockCache cache_{size_t(16) << 20, size_t(256) << 20};
  AllocStats stats_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace dpo
