// The CUDA backend: the Backend interface (dpo/backend.h) on device 0, every op a launcher of src/cuda on one stream.
// Buffers given to it are device memory from alloc() (a caching allocator, caching_allocator.cuh); NF4 weights
// arrive as host structs and are uploaded once (see Nf4Cache below), into the same allocator so that they count in
// bytes_in_use / peak_bytes. Errors are EngineError: E_NO_CUDA at creation, E_OOM with advice, E_INTERNAL otherwise.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cuda/caching_allocator.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_probe.h"
#include "cuda/attention.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/logits.cuh"
#include "cuda/matmul.cuh"
#include "cuda/matmul_nf4.cuh"
#include "cuda/optimizer.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope.cuh"
#include "cuda/transfer.cuh"
#include "dpo/backend.h"
#include "dpo/errors.h"
#include "quant/nf4.h"

namespace dpo {
namespace {

using cuda::CachingAllocator;
using cuda::Nf4Device;
using cuda::PooledBuffer;

__global__ void noop_kernel() {}

// Device copies of the NF4 weights this backend has seen, keyed by the host matrix's address and its packed
// buffer's address. A weight is uploaded on first use (packed nibbles + the fp32 absmax cache, computed here when
// the host matrix has none) and stays resident for the backend's lifetime: the frozen 4-bit base crosses PCIe once.
// Weights are taken as immutable. A cheap fingerprint (shape, dtype, a sample of the bytes) is compared on every use
// so that a different matrix later built at a reused address is uploaded again instead of silently reusing stale data.
// The device copies come from the backend's allocator: resident memory the user pays for, counted as in use.
class Nf4Cache {
 public:
  explicit Nf4Cache(CachingAllocator& mem) : mem_(mem) {}
  const Nf4Device& get(const Nf4Matrix& w, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    const Key key{&w, w.packed.data()};
    const uint64_t fp = fingerprint(w);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.fingerprint == fp) return it->second.dev;
    if (it != entries_.end()) entries_.erase(it);
    return entries_.emplace(key, upload(mem_, w, fp, stream)).first->second.dev;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
  }

 private:
  using Key = std::pair<const Nf4Matrix*, const uint8_t*>;
  struct Entry {
    PooledBuffer packed, absmax;
    Nf4Device dev;
    uint64_t fingerprint = 0;
  };

  static uint64_t fingerprint(const Nf4Matrix& w) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    auto mix = [&h](uint64_t v) {
      for (int i = 0; i < 8; i++) h = (h ^ ((v >> (8 * i)) & 0xffu)) * 1099511628211ull;
    };
    mix(uint64_t(w.rows)), mix(uint64_t(w.cols)), mix(uint64_t(w.dtype)), mix(w.packed.size()), mix(w.absmax.size());
    const size_t np = w.packed.size(), na = w.absmax.size();
    for (size_t i = 0; np && i < 64; i++) mix(w.packed[i * (np - 1) / 63]);
    for (size_t i = 0; na && i < 16; i++) {
      uint32_t u;
      std::memcpy(&u, &w.absmax[i * (na - 1) / 15], 4);
      mix(u);
    }
    return h;
  }

  static Entry upload(CachingAllocator& mem, const Nf4Matrix& w, uint64_t fp, cudaStream_t stream) {
    Entry e;
    e.fingerprint = fp;
    e.dev.rows = w.rows, e.dev.cols = w.cols, e.dev.dtype = w.dtype;
    if (w.numel() <= 0) return e;
    const size_t nbytes = size_t((w.numel() + 1) / 2), blocks = size_t(w.blocks());
    if (w.packed.size() < nbytes)
      fail(ErrorCode::BadModel, "nf4 weight (" + std::to_string(w.rows) + "x" + std::to_string(w.cols) + ") has " +
                                    std::to_string(w.packed.size()) + " packed bytes, expected " +
                                    std::to_string(nbytes));
    std::vector<float> tmp;
    const float* absmax = nf4_absmax(w, tmp);  // no cache on the host matrix: the nested absmax dequantized here
    e.packed = PooledBuffer(mem, nbytes, "NF4 weights");
    e.absmax = PooledBuffer(mem, blocks * sizeof(float), "NF4 absmax");
    DPO_CUDA_CHECK(cudaMemcpyAsync(e.packed.get(), w.packed.data(), nbytes, cudaMemcpyHostToDevice, stream));
    DPO_CUDA_CHECK(cudaMemcpyAsync(e.absmax.get(), absmax, blocks * sizeof(float), cudaMemcpyHostToDevice, stream));
    DPO_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host sources (tmp) must outlive the copies
    e.dev.packed = e.packed.as<uint8_t>();
    e.dev.absmax = e.absmax.as<float>();
    return e;
  }

  CachingAllocator& mem_;
  std::mutex mu_;
  std::map<Key, Entry> entries_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const cudaDeviceProp& prop) {
    DPO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    describe_ = std::string("cuda (") + prop.name + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
                ", " + std::to_string(prop.totalGlobalMem >> 30) + " GiB)";
  }
  // Queued work finishes before the stream goes; then the members free the memory (nf4_ before mem_, which
  // cudaFrees every block).
  ~CudaBackend() override {
    abort_capture();  // a recording holds blocks of mem_ and the stream
    nf4_.clear();
    if (stream_) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
  }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  BackendKind kind() const override { return BackendKind::Cuda; }
  std::string describe() const override { return describe_; }

  // ---- memory ----
  void* alloc(size_t bytes) override { return mem_.alloc(bytes); }
  void free(void* p) override {
    if (capture_ && p) {
      capture_->kept.push_back(p);  // the recorded kernels use it again at every replay
      return;
    }
    mem_.free(p);
  }
  void upload(void* dst, const void* src_host, size_t bytes) override {
    if (!bytes) return;
    if (capture_) fail(ErrorCode::Internal, "upload while recording a CUDA graph");
    DPO_CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, stream_));
    DPO_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the caller may reuse src_host on return
  }
  void download(void* dst_host, const void* src, size_t bytes) override {
    if (!bytes) return;
    if (capture_) fail(ErrorCode::Internal, "download while recording a CUDA graph");
    DPO_CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, stream_));
    DPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { DPO_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  // ---- recorded work: CUDA graphs, captured in relaxed mode (the allocator may cudaMalloc meanwhile) ----
  bool begin_capture() override {
    if (capture_ || !graphs_enabled()) return false;
    if (cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    capture_ = std::make_shared<Recording>(mem_, stream_);
    mem_.set_capturing(true);
    return true;
  }
  std::shared_ptr<void> end_capture() override {
    std::shared_ptr<Recording> rec = std::move(capture_);
    capture_.reset();
    if (!rec) return nullptr;
    mem_.set_capturing(false);
    cudaGraph_t graph = nullptr;
    cudaError_t err = cudaStreamEndCapture(stream_, &graph);
    if (err == cudaSuccess && graph) err = cudaGraphInstantiate(&rec->exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (err != cudaSuccess || !rec->exec) {
      cudaGetLastError();  // a capture error is not sticky: the stream works again without the graph
      return nullptr;      // rec returns its kept blocks to the allocator
    }
    return rec;
  }
  void abort_capture() override {
    if (capture_) end_capture();
  }
  void replay(const std::shared_ptr<void>& recording) override {
    auto* rec = static_cast<Recording*>(recording.get());
    if (!rec || !rec->exec) fail(ErrorCode::Internal, "replay of an empty CUDA graph");
    DPO_CUDA_CHECK(cudaGraphLaunch(rec->exec, stream_));
  }

  uint64_t bytes_in_use() const override { return mem_.in_use(); }
  uint64_t peak_bytes() const override { return mem_.peak(); }
  void reset_peak() override { mem_.reset_peak(); }

  // ---- forward ops ----
  void matmul(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) override {
    cuda::launch_matmul_forward(stream_, out, x, w, bias, M, K, N);
  }
  void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int M,
                       int K, int N) override {
    cuda::launch_matmul_backward(stream_, dx, dw, dbias, dout, x, w, M, K, N);
  }
  void matmul_nf4(float* out, const float* x, const Nf4Matrix& w, const float* bias, int M) override {
    if (M <= 0 || w.rows <= 0) return;  // K == 0 still writes the bias, as the CPU
    cuda::launch_matmul_nf4_forward(stream_, out, x, nf4_.get(w, stream_), bias, M);
  }
  void prepare_nf4(const Nf4Matrix& w) override {
    if (w.numel() > 0) nf4_.get(w, stream_);
  }
  void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M) override {
    if (M <= 0 || w.numel() <= 0) return;
    cuda::launch_matmul_nf4_backward_input(stream_, dx, dout, nf4_.get(w, stream_), M);
  }
  void rmsnorm(float* out, float* rstd, const float* x, const float* w, int M, int C, float eps) override {
    cuda::launch_rmsnorm_forward(stream_, out, rstd, x, w, M, C, eps);
  }
  void rope(float* x, const int* pos, int M, int H, int HD, const RopeTable& table) override {
    cuda::launch_rope_forward(stream_, x, pos, M, H, HD, table);
  }
  void attention(float* out, float* probs, const float* q, const float* k, const float* v, const int* qpos,
                 const uint8_t* key_valid, int B, int T, int S, int NH, int NKV, int HD) override {
    cuda::launch_attention_forward(stream_, out, probs, q, k, v, qpos, key_valid, B, T, S, NH, NKV, HD);
  }
  void swiglu(float* out, const float* gate, const float* up, int M, int F) override {
    cuda::launch_swiglu_forward(stream_, out, gate, up, M, F);
  }
  void embedding(float* out, const int* ids, const float* table, int M, int C) override {
    cuda::launch_embedding_forward(stream_, out, ids, table, M, C);
  }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    cuda::launch_add_forward(stream_, out, a, b, n);
  }
  void logsoftmax_gather(float* logp, float* lse, const float* logits, const int* target, int M, int V) override {
    cuda::launch_logsoftmax_gather_forward(stream_, logp, lse, logits, target, M, V);
  }
  void argmax_rows(int* out, const float* x, int M, int V) override { cuda::launch_argmax_rows(stream_, out, x, M, V); }

  // ---- backward ops ----
  void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                        int M, int C) override {
    cuda::launch_rmsnorm_backward(stream_, dx, dw, dout, x, w, rstd, M, C);
  }
  void rope_backward(float* dx, const int* pos, int M, int H, int HD, const RopeTable& table) override {
    cuda::launch_rope_backward(stream_, dx, pos, M, H, HD, table);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                          const float* k, const float* v, int B, int T, int S, int NH, int NKV, int HD) override {
    cuda::launch_attention_backward(stream_, dq, dk, dv, dout, probs, q, k, v, B, T, S, NH, NKV, HD);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int M,
                       int F) override {
    cuda::launch_swiglu_backward(stream_, dgate, dup, dout, gate, up, M, F);
  }
  void logsoftmax_gather_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                  const int* target, int M, int V) override {
    cuda::launch_logsoftmax_gather_backward(stream_, dlogits, dlogp, logits, lse, target, M, V);
  }

  // ---- the small steps between the big ops (transfer.cu; copies as stream-ordered memcpy / memset) ----
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) DPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void fill_zero(void* dst, size_t bytes) override {
    if (bytes) DPO_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_));
  }
  void scatter_rows(float* dst, const int* rows, const float* src, int M, int width) override {
    cuda::launch_scatter_rows(stream_, dst, rows, src, M, width);
  }
  void gather_rows(float* dst, const float* src, const int* rows, int M, int width) override {
    cuda::launch_gather_rows(stream_, dst, src, rows, M, width);
  }
  void axpy(float* y, const float* x, float a, int64_t n) override { cuda::launch_axpy(stream_, y, x, a, n); }
  void scale(float* out, const float* x, float a, int64_t n) override { cuda::launch_scale(stream_, out, x, a, n); }
  void dropout(float* out, const float* x, const uint8_t* kept, float keep_scale, int64_t n) override {
    cuda::launch_dropout_forward(stream_, out, x, kept, keep_scale, n);
  }
  void dropout_backward(float* dx, const float* dout, const uint8_t* kept, float keep_scale, int64_t n) override {
    cuda::launch_dropout_backward(stream_, dx, dout, kept, keep_scale, n);
  }
  void embedding_backward(float* dtable, const float* dout, const int* ids, int M, int C) override {
    cuda::launch_embedding_backward(stream_, dtable, dout, ids, M, C);
  }
  void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int* seq,
                        const int* pos, int M, int S, int NH, int NKV, int HD) override {
    cuda::launch_attention_decode(stream_, out, q, kcache, vcache, seq, pos, M, S, NH, NKV, HD);
  }

  // ---- the optimizer step (optimizer.cu) ----
  void l2_norm(float* out, const float* x, int64_t n) override {
    cuda::launch_l2_norm(stream_, out, x, n, optimizer_scratch().norm_partials.as<double>());
  }
  void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWStepScalars& s,
                  int64_t n) override {
    cuda::launch_adamw_step(stream_, param, exp_avg, exp_avg_sq, grad, s, n);
  }
  void adamw_bnb32_step(float* param, float* m, float* v, const float* grad, const BnbAdamStepScalars& s,
                        int64_t n) override {
    cuda::launch_adamw_bnb32_step(stream_, param, m, v, grad, s, n);
  }
  void adamw_bnb8bit_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                          const float* grad, const BnbAdamStepScalars& s, int64_t n) override {
    cuda::launch_adamw_bnb8bit_step(stream_, param, state1, state2, absmax1, absmax2, grad,
                                    optimizer_scratch().qmaps.as<float>(), s, n);
  }

 private:
  // One captured graph and the blocks its kernels use, given back to the allocator when the graph goes (after the
  // stream has finished any replay that reads them).
  struct Recording {
    Recording(CachingAllocator& m, cudaStream_t s) : mem(m), stream(s) {}
    ~Recording() {
      cudaStreamSynchronize(stream);
      if (exec) cudaGraphExecDestroy(exec);
      for (void* p : kept) {
        try {
          mem.free(p);
        } catch (...) {  // a block of this allocator cannot fail to free; destructors must not throw
        }
      }
    }
    CachingAllocator& mem;
    cudaStream_t stream;
    cudaGraphExec_t exec = nullptr;
    std::vector<void*> kept;
  };
  // DPO_CUDA_GRAPHS=0 turns recording off; so does DPO_CUDA_SYNC (its per-launch synchronize cannot be recorded).
  static bool graphs_enabled() {
    static const bool on = [] {
      const char* g = std::getenv("DPO_CUDA_GRAPHS");
      const char* s = std::getenv("DPO_CUDA_SYNC");
      return !(g && g[0] == '0') && !(s && s[0] && s[0] != '0');
    }();
    return on;
  }

  // What the optimizer ops keep on the device: the two 8-bit dynamic maps (signed, then unsigned: 2 x 256 floats),
  // uploaded once, and the l2_norm partial sums. Made on first use, so a backend that never trains holds neither;
  // reusing one scratch for every l2_norm is safe because all work is ordered on the one stream.
  struct OptimizerScratch {
    PooledBuffer qmaps, norm_partials;
  };
  OptimizerScratch& optimizer_scratch() {
    std::lock_guard<std::mutex> lock(scratch_mu_);
    if (!scratch_.qmaps.get()) {
      OptimizerScratch s;
      s.qmaps = PooledBuffer(mem_, 2 * 256 * sizeof(float), "optimizer code maps");
      s.norm_partials = PooledBuffer(mem_, cuda::kL2NormPartials * sizeof(double), "gradient norm scratch");
      // Static host tables, so the copies need no synchronization.
      DPO_CUDA_CHECK(cudaMemcpyAsync(s.qmaps.as<float>(), dynamic_map_signed(), 256 * sizeof(float),
                                     cudaMemcpyHostToDevice, stream_));
      DPO_CUDA_CHECK(cudaMemcpyAsync(s.qmaps.as<float>() + 256, dynamic_map_unsigned(), 256 * sizeof(float),
                                     cudaMemcpyHostToDevice, stream_));
      scratch_ = std::move(s);
    }
    return scratch_;
  }

  cudaStream_t stream_ = nullptr;
  std::shared_ptr<Recording> capture_;  // the recording in progress, if any
  std::string describe_;
  CachingAllocator mem_;  // declared before nf4_ and scratch_: destroyed after them
  Nf4Cache nf4_{mem_};
  std::mutex scratch_mu_;
  OptimizerScratch scratch_;
};

}  // namespace

// Device 0, if the probe finds it usable, it is Ampere or newer (bf16 tensor-core MMA), and this build carries
// code it can run. Every refusal is E_NO_CUDA with the reason, so the caller can fall back to the CPU.
std::unique_ptr<Backend> make_cuda_backend() {
  const cuda::ProbeResult probe = cuda::probe();
  if (!probe.available) fail(ErrorCode::NoCuda, "no usable CUDA device: " + probe.reason);
  cudaDeviceProp prop{};
  cudaError_t err = cudaGetDeviceProperties(&prop, 0);
  if (err == cudaSuccess) err = cudaSetDevice(0);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorCode::NoCuda, std::string("CUDA device 0 is not usable: ") + cudaGetErrorName(err));
  }
  if (prop.major < 8)
    fail(ErrorCode::NoCuda, std::string("GPU ") + prop.name + " has compute capability " + std::to_string(prop.major) +
                                "." + std::to_string(prop.minor) +
                                "; the CUDA backend needs 8.0 or newer (bf16 tensor cores): use --backend cpu");
  noop_kernel<<<1, 1>>>();
  err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorCode::NoCuda, std::string("this engine's CUDA code does not run on ") + prop.name + " (sm_" +
                                std::to_string(prop.major) + std::to_string(prop.minor) +
                                "): " + cudaGetErrorName(err) +
                                "; rebuild with DPO_CUDA_ARCHS set to include it, or use --backend cpu");
  }
  return std::make_unique<CudaBackend>(prop);
}

}  // namespace dpo
