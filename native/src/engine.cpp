// Engine entry points: version, backend probing and model loading (backend choice with a CPU fallback).
#include "dpo/engine.h"

#include <cstdlib>

#include "cpu/thread_pool.h"
#include "io/safetensors.h"
#include "model/model_impl.h"
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

BackendInfo probe_backends() {
  BackendInfo info;
  info.cpu_threads = cpu_thread_count();
#ifdef DPO_WITH_CUDA
  info.cuda_compiled = true;
  cuda::ProbeResult r = cuda::probe();
  info.cuda_available = r.available;
  info.cuda_reason = r.reason;
  info.cuda_device = r.device;
  info.cuda_free_bytes = r.free_bytes;
  info.cuda_total_bytes = r.total_bytes;
#else
  info.cuda_reason = "this build has no CUDA backend (no nvcc at build time, or DPO_CUDA=OFF)";
#endif
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

// The backend a load computes on, and the note that tells the user why.
std::unique_ptr<Backend> choose_backend(BackendChoice choice, std::string& note) {
  if (choice == BackendChoice::Cpu) {
    note = "--backend cpu";
    return cpu_backend(note);
  }
  const BackendInfo probe = probe_backends();
  if (choice == BackendChoice::Cuda) {
    if (!probe.cuda_available)
      fail(ErrorCode::NoCuda, "--backend cuda was requested but CUDA is unavailable: " + probe.cuda_reason +
                                  ". Use --backend cpu or auto.");
    note = "--backend cuda";
    return make_cuda_backend();
  }
  if (!probe.cuda_available) {
    note = "CUDA unavailable (" + probe.cuda_reason + "); computing on the CPU";
    return cpu_backend(note);
  }
  try {
    note = "auto: CUDA device " + probe.cuda_device;
    return make_cuda_backend();
  } catch (const EngineError& e) {
    note = std::string("CUDA device found but not usable (") + e.what() + "); computing on the CPU";
    return cpu_backend(note);
  }
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& dir, const LoadOptions& options,
                                   const ProgressCallback& progress) {
  auto impl = std::make_unique<ModelImpl>();
  ModelConfig config = load_model_config(dir);
  WeightSet ws(dir);
  impl->backend = choose_backend(options.backend, impl->info.backend_note);
  LoadStats stats;
  impl->weights = load_weights(config, ws, options.quant == QuantMode::Nf4, stats, progress);
  impl->dev.sync(*impl->backend, impl->weights);
  impl->info.config = config;
  impl->info.n_params = stats.n_params;
  impl->info.checkpoint_bytes = stats.checkpoint_bytes;
  impl->info.resident_bytes = stats.resident_bytes;
  impl->info.quantized_linears = stats.quantized_linears;
  impl->info.backend = impl->backend->describe();
  impl->info.quant = options.quant;
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

}  // namespace dpo
