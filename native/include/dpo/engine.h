// The engine's public C++ API (no N-API types): probing backends, loading a model, log-probs and greedy generation.
// The addon (native/addon) and the standalone tool (native/tools) are thin shells over this header.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dpo/backend.h"
#include "dpo/errors.h"
#include "dpo/model_config.h"

namespace dpo {

std::string engine_version();

enum class QuantMode { None, Nf4 };
enum class BackendChoice { Auto, Cpu, Cuda };

// What this machine can run, for `dpo-studio info` and the model panel.
struct BackendInfo {
  bool cuda_compiled = false;   // the engine was built with nvcc
  bool cuda_available = false;  // a device answered
  std::string cuda_reason;      // why not, when unavailable (e.g. "cudaGetDeviceCount failed: error 35 ...")
  std::string cuda_device;      // device 0 name
  uint64_t cuda_free_bytes = 0;
  uint64_t cuda_total_bytes = 0;
  int cpu_threads = 0;
};
BackendInfo probe_backends();

struct LoadOptions {
  QuantMode quant = QuantMode::Nf4;
  BackendChoice backend = BackendChoice::Auto;
};

struct ModelInfo {
  ModelConfig config;
  int64_t n_params = 0;             // parameters in the checkpoint
  uint64_t checkpoint_bytes = 0;    // tensor bytes on disk
  uint64_t resident_bytes = 0;      // weight bytes held by the engine (NF4 format + fp32 rest)
  int quantized_linears = 0;        // q/k/v/o/gate/up/down matrices stored as NF4
  std::string backend;              // what computes, e.g. "cpu (2 threads)"
  std::string backend_note;         // why this backend (e.g. CUDA unavailable -> CPU)
  QuantMode quant = QuantMode::Nf4;
};

// One sequence for log-prob scoring: token ids and TRL labels (-100 = not scored; spec §7.2, §8).
struct ScoredSequence {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;  // same length as ids
};
struct SequenceLogp {
  double logp = 0;          // sum over positions t of log p(labels[t+1] | ids[..t]) where labels[t+1] != -100
  int tokens = 0;           // number of scored tokens
  double logits_mean = 0;   // mean of every logit over the padded (Lmax, V) block (TRL's logits/* metric, §8)
};

struct GenerateOptions {
  int max_new_tokens = 200;
  std::vector<int> eos_ids;  // generation stops after emitting one of these (it is kept in the output, §11)
};
struct GenerateResult {
  std::vector<std::vector<int32_t>> tokens;  // per prompt: the generated ids (without the prompt)
  std::vector<std::string> finish;           // per prompt: "eos" | "length" | "cancelled"
};
using TokenCallback = std::function<void(int sequence, int32_t token)>;
using ProgressCallback = std::function<void(double fraction)>;

class ModelImpl;

// A loaded model. Calls on one Model are serialised (one computation at a time).
class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& dir, const LoadOptions& options,
                                     const ProgressCallback& progress = nullptr);
  ~Model();

  const ModelInfo& info() const;

  // Scores B sequences in one right-padded batch (pad id `pad_id`, spec §7.4).
  std::vector<SequenceLogp> logps(const std::vector<ScoredSequence>& batch, int32_t pad_id,
                                  const std::atomic<bool>* cancel = nullptr);

  // Greedy decoding of a batch of prompts with a KV cache. Each prompt's tokens are the same whether it runs
  // alone or in a batch. on_token is called for every generated token, in order, on the calling thread.
  GenerateResult generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
                          const TokenCallback& on_token = nullptr, const std::atomic<bool>* cancel = nullptr);

  ModelImpl& impl() { return *impl_; }

 private:
  explicit Model(std::unique_ptr<ModelImpl> impl);
  std::unique_ptr<ModelImpl> impl_;
};

}  // namespace dpo
