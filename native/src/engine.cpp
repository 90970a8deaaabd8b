// Engine entry points: version, backend probing and model loading (backend choice with a CPU fallback).
#include "dpo/engine.h"

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
  info.cuda_reason = "this build has no CUDA backend (nvcc was not found when the engine was built)";
#endif
  return info;
}

Model::Model(std::unique_ptr<ModelImpl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
const ModelInfo& Model::info() const { return impl_->info; }

std::unique_ptr<Model> Model::load(const std::string& dir, const LoadOptions& options,
                                   const ProgressCallback& progress) {
  auto impl = std::make_unique<ModelImpl>();
  // The CUDA backend's kernels arrive with the CUDA issue; until then every choice computes on the CPU,
  // and the reason is reported so the user is never misled about where the work runs.
  BackendInfo probe = probe_backends();
  if (options.backend == BackendChoice::Cuda) {
    if (!probe.cuda_available)
      fail(ErrorCode::NoCuda, "--backend cuda was requested but CUDA is unavailable: " + probe.cuda_reason +
                                  ". Use --backend cpu or auto.");
    fail(ErrorCode::NoCuda, "the CUDA backend is not implemented in this engine version yet; use --backend cpu");
  }
  impl->backend = make_cpu_backend();
  impl->info.backend_note = probe.cuda_available
                                ? "CUDA device " + probe.cuda_device + " found; this engine version computes on the CPU"
                                : "CUDA unavailable (" + probe.cuda_reason + "); computing on the CPU";

  ModelConfig config = load_model_config(dir);
  WeightSet ws(dir);
  LoadStats stats;
  impl->weights = load_weights(config, ws, options.quant == QuantMode::Nf4, stats, progress);
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
