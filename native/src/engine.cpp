// Engine entry points: version, backend probing and model loading (backend choice with a self-checked GPU and a
// CPU fallback: docs/cuda-self-check.md).
#include "dpo/engine.h"

#include <cstdlib>

#include "cpu/fault_injecting_backend.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "io/safetensors.h"
#include "model/backend_choice.h"
#include "model/model_impl.h"
#include "model/shared_prefix.h"
#ifdef DPO_WITH_CUDA
#include "cuda/cuda_probe.h"
#endif

namespace dpo {

std::string engine_version() {
#ifdef DPO_WITH_CUDA
  return "0.1.0+cuda";
#else
  return "0.1.0";
#endif
}

GpuOffer gpu_offer() {
  GpuOffer o;
  if (const char* test = std::getenv("DPO_TEST_GPU"); test && *test) {
    // One stand-in per process, like the CUDA device below (the first spec seen is kept).
    static CheckedGpu stand_in(test_gpu_device_name(test),
                               [spec = std::string(test)] { return make_test_gpu_backend(spec); });
    o.available = true;
    o.gpu = &stand_in;
    return o;
  }
#ifdef DPO_WITH_CUDA
  cuda::ProbeResult r = cuda::probe();
  o.available = r.available;
  o.reason = r.reason;
  o.free_bytes = r.free_bytes;
  o.total_bytes = r.total_bytes;
  if (r.available) {
    static CheckedGpu device(r.device, [] { return make_cuda_backend(); });
    o.gpu = &device;
  }
#else
  o.reason = "this build has no CUDA backend (no nvcc at build time, or DPO_CUDA=OFF)";
#endif
  return o;
}

BackendInfo probe_backends() {
  BackendInfo info;
  info.cpu_threads = cpu_thread_count();
  info.cpu_kernels = cpu::cpu_kernels_summary();
#ifdef DPO_WITH_CUDA
  info.cuda_compiled = true;
#endif
  const GpuOffer o = gpu_offer();
  info.cuda_available = o.available;
  info.cuda_reason = o.reason;
  info.cuda_free_bytes = o.free_bytes;
  info.cuda_total_bytes = o.total_bytes;
  if (o.available) {
    info.cuda_device = o.gpu->device();
    const SelfCheckResult& r = o.gpu->self_check();
    info.cuda_self_check = r.skipped ? "skipped" : r.passed ? "passed" : "failed";
    info.cuda_self_check_note = o.gpu->summary();
    info.cuda_self_check_ms = r.seconds * 1e3;
  }
  return info;
}

Model::Model(std::unique_ptr<ModelImpl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
const ModelInfo& Model::info() const { return impl_->info; }

// No model lock: the backends' counters are thread-safe, so the app can read them while a training step runs.
MemoryStats Model::memory_stats() const { return {impl_->backend->bytes_in_use(), impl_->backend->peak_bytes()}; }

void Model::reset_peak_memory() { impl_->backend->reset_peak(); }

namespace {

// The CPU backend, or under DPO_BACKEND=cpu-guarded (tests only) the CPU backend that enforces the device-memory
// rules, so that every test of the model path also checks it for the CUDA backend.
std::unique_ptr<Backend> cpu_backend(std::string& note) {
  const char* env = std::getenv("DPO_BACKEND");
  if (env && std::string(env) == "cpu-guarded") {
    note += " [DPO_BACKEND=cpu-guarded: device-memory checks on]";
    return make_guarded_cpu_backend();
  }
  return make_cpu_backend();
}

}  // namespace

std::unique_ptr<Backend> choose_backend(BackendChoice choice, const GpuOffer& offer, std::string& note) {
  if (choice == BackendChoice::Cpu) {
    note = "--backend cpu";
    return cpu_backend(note);
  }
  if (choice == BackendChoice::Cuda) {
    if (!offer.available)
      fail(ErrorCode::NoCuda,
           "--backend cuda was requested but CUDA is unavailable: " + offer.reason + ". Use --backend cpu or auto.");
    const SelfCheckResult& r = offer.gpu->self_check();
    if (!r.passed)
      fail(r.error && r.error_code == ErrorCode::DeviceFault ? ErrorCode::DeviceFault : ErrorCode::NoCuda,
           "--backend cuda was requested but " + self_check_failure_message(offer.gpu->device(), r) +
               ". Use --backend cpu, or auto (which then computes on the CPU).");
    note = "--backend cuda: " + offer.gpu->device() + ", self-check " + offer.gpu->summary();
    return offer.gpu->make();
  }
  if (!offer.available) {
    note = "CUDA unavailable (" + offer.reason + "); computing on the CPU";
    return cpu_backend(note);
  }
  const SelfCheckResult& r = offer.gpu->self_check();
  if (!r.passed) {
    note = "auto: " + self_check_failure_message(offer.gpu->device(), r) + "; computing on the CPU";
    return cpu_backend(note);
  }
  try {
    note = "auto: CUDA device " + offer.gpu->device() + ", self-check " + offer.gpu->summary();
    return offer.gpu->make();
  } catch (const EngineError& e) {
    note = std::string("CUDA device found but not usable (") + e.what() + "); computing on the CPU";
    return cpu_backend(note);
  }
}

ModelCheck check_model(const std::string& dir, QuantMode quant) {
  ModelCheck r;
  try {
    r.config = load_model_config(dir);
    r.config_read = true;
    WeightSet ws(dir);
    const LoadStats st = validate_weights(r.config, ws, quant == QuantMode::Nf4);
    r.n_params = st.n_params;
    r.checkpoint_bytes = st.checkpoint_bytes;
    r.quantized_linears = st.quantized_linears;
    r.ok = true;
  } catch (const EngineError& e) {
    r.error_code = e.code_name();
    r.message = e.what();
  }
  return r;
}

std::unique_ptr<Model> Model::load(const std::string& dir, const LoadOptions& options,
                                   const ProgressCallback& progress) {
  auto impl = std::make_unique<ModelImpl>();
  ModelConfig config = load_model_config(dir);
  WeightSet ws(dir);
  impl->backend = choose_backend(options.backend, options.backend == BackendChoice::Cpu ? GpuOffer{} : gpu_offer(),
                                 impl->info.backend_note);
  LoadStats stats;
  impl->weights = load_weights(config, ws, options.quant == QuantMode::Nf4, stats, progress);
  impl->dev.sync(*impl->backend, impl->weights);
  // An NF4 model never trains lm_head or the embedding, so their fp32 copies go where bf16 serves (1.5 GB at
  // Breeze-7B, docs/cpu-kernels.md#bf16-lm_head).
  if (stats.quantized_linears > 0) {
    stats.resident_bytes -= impl->dev.release_fp32_lm_head(*impl->backend, impl->weights);
    stats.resident_bytes -= impl->dev.keep_embedding_as_bf16(*impl->backend, impl->weights);
  }
  impl->info.config = config;
  impl->info.n_params = stats.n_params;
  impl->info.checkpoint_bytes = stats.checkpoint_bytes;
  impl->info.resident_bytes = stats.resident_bytes;
  impl->info.quantized_linears = stats.quantized_linears;
  impl->info.backend = impl->backend->describe();
  impl->info.chained_scoring = prefix_sharing_enabled(*impl->backend);
  impl->info.quant = options.quant;
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

}  // namespace dpo
