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
#include "dpo/training_state.h"

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
  // The GPU self-check, run once per process when a GPU answers (docs/cuda-self-check.md): "passed", "failed",
  // "skipped" (DPO_CUDA_SELF_CHECK=off) or "not run" (no GPU answered); the note names the failing kernel and the
  // GPU, or says what passed and its cost.
  std::string cuda_self_check = "not run";
  std::string cuda_self_check_note;
  double cuda_self_check_ms = 0;
  int cpu_threads = 0;
  // The CPU kernel set and how it multiplies 4-bit weights here
  // (docs/cpu-kernels.md#kernel-sets-avx-512-avx2-and-baseline-chosen-at-run-time).
  std::string cpu_kernels;
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
  // Whether Model::logps without the logits metric runs each call as one row of chained sequences, with no padding
  // (docs/performance.md#chained-rows-without-the-logits-metric): its calls then need no grouping by length.
  bool chained_scoring = false;
  QuantMode quant = QuantMode::Nf4;
};

// What loading `dir` would do, decided from config.json and the safetensors headers alone (no tensor data is read):
// the very checks Model::load makes (config fields, architecture, RoPE scaling, every tensor's name, shape, dtype and
// quant state, nothing left over), so a folder is reported supported only if it will load. `ok` false carries the
// error Model::load would throw.
struct ModelCheck {
  bool ok = false;
  std::string error_code;     // "E_BAD_MODEL", ... when !ok
  std::string message;        // the error, when !ok
  bool config_read = false;   // config.json parsed (even when the tensors then failed)
  ModelConfig config;
  int64_t n_params = 0;
  uint64_t checkpoint_bytes = 0;
  int quantized_linears = 0;  // linears that would be NF4 with this quant mode
};
ModelCheck check_model(const std::string& dir, QuantMode quant = QuantMode::Nf4);

// One sequence for log-prob scoring: token ids and TRL labels (-100 = not scored; docs/reference/dpo-data.md#labels,
// docs/reference/dpo-loss.md#sequence-log-probs).
struct ScoredSequence {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;  // same length as ids
};
struct SequenceLogp {
  double logp = 0;          // sum over positions t of log p(labels[t+1] | ids[..t]) where labels[t+1] != -100
  int tokens = 0;           // number of scored tokens
  // Mean of every logit over the padded (Lmax, V) block: TRL's logits/* metric (docs/reference/dpo-loss.md#metrics);
  // NaN when Model::logps was called with with_logits_mean = false.
  double logits_mean = 0;
  // (tokens) log p of each scored token, in sequence order: logp is their sum, accumulated in double in this order,
  // so summing them the same way gives logp bit for bit (docs/insights.md). Comes from the same pass, at no cost.
  std::vector<float> token_logps;
};

struct GenerateOptions {
  int max_new_tokens = 200;
  // Generation stops after emitting one of these, which is kept in the output (docs/reference/generation.md#stopping).
  std::vector<int> eos_ids;
};
struct GenerateResult {
  std::vector<std::vector<int32_t>> tokens;  // per prompt: the generated ids (without the prompt)
  std::vector<std::string> finish;  // per prompt: "eos" | "length" | "context" | "cancelled"
  int decode_steps = 0;  // KV-cached steps after the prefill
  int replayed_steps = 0;  // of those, replayed from a recording (CUDA graphs; 0 on the CPU)
};
using TokenCallback = std::function<void(int sequence, int32_t token)>;

// ---- training (LoRA + DPO): step-sized calls; the loop, schedule and logging live in TypeScript.

struct LoraOptions {
  std::vector<std::string> targets = {"q_proj", "v_proj"};
  int r = 64;
  float alpha = 16.0f;
  float dropout = 0.0f;  // on the LoRA input during training; TRL's disable_dropout makes it 0 (docs/reference/lora.md)
  uint64_t seed = 42;
};

// One adapter tensor with its PEFT name (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight).
struct LoraTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

enum class DpoLoss { Sigmoid, Ipo, Hinge, Robust };

struct DpoOptions {
  float beta = 0.1f;
  DpoLoss loss = DpoLoss::Sigmoid;
  float label_smoothing = 0.0f;
  // Gradients accumulate as grad_scale * d(mean loss over the micro-batch's pairs)/dθ (1/GA,
  // docs/reference/trainer.md#loss-scaling-and-the-logged-loss).
  float grad_scale = 1.0f;
};

struct DpoPair {
  ScoredSequence chosen, rejected;
  double ref_chosen = 0, ref_rejected = 0;  // reference log-prob sums (adapter disabled)
};

// Per pair, TRL's definitions (docs/reference/dpo-loss.md). For ipo the logps are length-averaged, as TRL's
// concatenated_forward does.
struct DpoPairMetrics {
  double loss = 0;
  double chosen_logp = 0, rejected_logp = 0;
  double chosen_logits_mean = 0, rejected_logits_mean = 0;
  double chosen_reward = 0, rejected_reward = 0;
};

struct OptimizerOptions {
  bool eight_bit = true;  // paged_adamw_8bit (bitsandbytes blockwise, docs/reference/optimizer.md) or fp32 AdamW
  float lr = 2e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  float max_grad_norm = 1.0f;  // 0 = no clipping
};
using ProgressCallback = std::function<void(double fraction)>;

struct MemoryStats {
  uint64_t in_use_bytes = 0;
  uint64_t peak_bytes = 0;
};

class ModelImpl;

// A loaded model. Calls on one Model are serialised (one computation at a time).
class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& dir, const LoadOptions& options,
                                     const ProgressCallback& progress = nullptr);
  ~Model();

  const ModelInfo& info() const;

  // Scores B sequences in one right-padded batch (pad id `pad_id`, docs/reference/dpo-data.md#collation-and-padding).
  // use_adapter = false scores with the adapter disabled (the DPO reference model,
  // docs/reference/dpo-loss.md#reference-log-probs).
  // with_logits_mean = false: the caller reads no logits_mean (the reference pass); each result's logits_mean is then
  // NaN, and the pass computes no rows for the padding that metric averages over: the batch runs as one chained row
  // (docs/performance.md#chained-rows-without-the-logits-metric). logp and token_logps are the same bits either way.
  std::vector<SequenceLogp> logps(const std::vector<ScoredSequence>& batch, int32_t pad_id,
                                  const std::atomic<bool>* cancel = nullptr, bool use_adapter = true,
                                  bool with_logits_mean = true);

  // Greedy decoding of a batch of prompts with a KV cache. Each prompt's tokens are the same whether it runs
  // alone or in a batch. on_token is called for every generated token, in order, on the calling thread.
  GenerateResult generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
                          const TokenCallback& on_token = nullptr, const std::atomic<bool>* cancel = nullptr);

  // A fresh adapter: A kaiming-uniform from the seed (torch generator semantics), B = 0. Replaces any adapter and
  // its gradients and optimizer state.
  void attach_lora(const LoraOptions& options);
  void detach_lora();
  bool has_lora() const;
  std::vector<LoraTensor> lora_tensors() const;
  // Loads adapter values; every tensor of the attached adapter must be given with its shape (E_BAD_INPUT otherwise).
  void set_lora_tensors(const std::vector<LoraTensor>& tensors);
  // The accumulated gradients (dA, dB) under the same names as lora_tensors(): parity checks and tests.
  std::vector<LoraTensor> lora_gradients() const;

  // Memory of the compute backend (GPU memory on CUDA) held now, and at most since load or reset_peak_memory().
  MemoryStats memory_stats() const;
  void reset_peak_memory();

  // Forward + backward of the DPO loss over a micro-batch of pairs (one right-padded batch of chosen and rejected
  // sequences); LoRA gradients accumulate. Needs an attached adapter.
  std::vector<DpoPairMetrics> dpo_accumulate(const std::vector<DpoPair>& pairs, int32_t pad_id,
                                             const DpoOptions& options, const std::atomic<bool>* cancel = nullptr);
  // dpo_accumulate over each micro-batch of one optimizer step in turn, computed together where the backend allows
  // (docs/performance.md#chained-training-steps): the positions every micro-batch starts with (a chat template) run
  // once, and every other op runs once over all micro-batches. The metrics are dpo_accumulate's bit for bit; the
  // LoRA gradients are the same sums in another order (float rounding). Result [i] belongs to micro_batches[i].
  std::vector<std::vector<DpoPairMetrics>> dpo_accumulate_group(const std::vector<std::vector<DpoPair>>& micro_batches,
                                                                int32_t pad_id, const DpoOptions& options,
                                                                const std::atomic<bool>* cancel = nullptr);
  // Global gradient norm (pre-clip), clipping, one optimizer update, zeroed gradients. Returns the pre-clip norm.
  double optimizer_step(const OptimizerOptions& options);
  // The optimizer state, step counters and dropout generator of the attached adapter as of its last optimizer step
  // (downloaded from the backend), and the way back: import checks everything against the attached adapter first
  // (names, sizes, layouts), changes nothing on a mismatch, and zeroes the gradients (a step boundary has none).
  TrainingState export_training_state() const;
  void import_training_state(const TrainingState& state);

  // Full-parameter supervised fine-tuning (fp32 weights, i.e. loaded with QuantMode::None): cross-entropy of the
  // labelled tokens (labels != -100, shifted as in docs/reference/dpo-loss.md#sequence-log-probs), mean over the
  // batch's labelled tokens; gradients of every weight accumulate as grad_scale * d(mean)/dθ. Returns the mean loss and
  // the token count.
  std::pair<double, int> sft_accumulate(const std::vector<ScoredSequence>& batch, int32_t pad_id, float grad_scale,
                                        const std::atomic<bool>* cancel = nullptr);
  // Clipping + one fp32 AdamW update of every weight + zeroed gradients; returns the pre-clip gradient norm.
  double sft_step(const OptimizerOptions& options);
  // Writes the weights as model.safetensors with Hugging Face names (bf16 or fp32), atomically.
  void save_weights(const std::string& path, bool bf16) const;

  ModelImpl& impl() { return *impl_; }

 private:
  explicit Model(std::unique_ptr<ModelImpl> impl);
  std::unique_ptr<ModelImpl> impl_;
};

}  // namespace dpo
