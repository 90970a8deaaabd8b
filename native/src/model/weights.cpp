// Loads a Hugging Face checkpoint into ModelWeights: shape/dtype checks per tensor, fp16 cast + NF4 quantization
// of the seven linear kinds (docs/reference/precision.md#loading), or bitsandbytes pre-quantized NF4 tensors read as
// they are (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints), keeping every other tensor a pre-quantized
// checkpoint carries (biases, norms, 16-bit linears it left unquantized). The same walk over the tensors validates a
// checkpoint without reading its data (validate_weights), so that model inspection and loading accept exactly the same
// folders; a tensor the walk does not use is an error.
#include "model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>

#include "core/half.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace dpo {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); i++) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

// One walk over a checkpoint: loads (or, validating, only checks) each tensor the config calls for and remembers its
// name, so that what is left over can be reported. Layers are walked in parallel, each with its own Walk.
struct Walk {
  const WeightSet& ws;
  bool validate_only = false;
  LoadStats stats;
  std::vector<std::string> used;

  const TensorView& take(const std::string& name) {
    used.push_back(name);
    return ws.get(name);
  }
  const TensorView* take_if_present(const std::string& name) {
    const TensorView* t = ws.find(name);
    if (t) used.push_back(name);
    return t;
  }

  const TensorView& expect_float(const std::string& name, const std::vector<int64_t>& shape) {
    const TensorView& t = take(name);
    if (t.shape != shape)
      fail(ErrorCode::BadModel, "tensor " + name + " has shape " + shape_str(t.shape) + " but config.json implies " +
                                    shape_str(shape) + " (in " + t.file + ")");
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
      fail(ErrorCode::BadModel,
           "tensor " + name + " has dtype " + dtype_name(t.dtype) + "; expected F32, F16 or BF16 (in " + t.file + ")");
    stats.n_params += t.numel();
    stats.checkpoint_bytes += t.nbytes;
    return t;
  }

  // fp32 values of a floating tensor already checked by expect_float (empty when only validating).
  std::vector<float> widen(const TensorView& t) const {
    if (validate_only) return {};
    std::vector<float> out(size_t(t.numel()));
    tensor_to_f32(t, out.data());
    return out;
  }
  std::vector<float> read_f32(const std::string& name, const std::vector<int64_t>& shape) {
    return widen(expect_float(name, shape));
  }
};

template <typename T>
std::vector<T> read_raw(const TensorView& t) {
  std::vector<T> out(t.nbytes / sizeof(T));
  std::memcpy(out.data(), t.data, out.size() * sizeof(T));
  return out;
}

// A bitsandbytes `*-bnb-4bit` linear weight (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints): P.weight is
// uint8 packed nibbles, P.weight.absmax uint8 (nested) with nested_absmax / nested_quant_map, P.weight.quant_map the
// NF4 code table, and the quant_state JSON with shape, dtype and nested_offset.
void load_prequantized(Walk& wk, Linear& L, const std::string& prefix) {
  const std::string w = prefix + ".weight";
  const int out = L.out, in = L.in;
  const TensorView* state_t = wk.take_if_present(w + ".quant_state.bitsandbytes__nf4");
  if (!state_t) fail(ErrorCode::BadModel, "tensor " + w + " is 4-bit but has no quant_state.bitsandbytes__nf4 entry");
  json::Value state;
  try {
    state = json::parse(std::string(reinterpret_cast<const char*>(state_t->data), state_t->nbytes));
  } catch (const std::exception& e) {
    fail(ErrorCode::BadModel, "tensor " + w + ": quant_state is not valid JSON: " + e.what());
  }
  // Each field is type-checked here: a json accessor's own error would name neither the tensor nor the field.
  auto field = [&](const char* key, bool (json::Value::*is_type)() const, const char* type) -> const json::Value& {
    const json::Value* v = state.find(key);
    if (!v) fail(ErrorCode::BadModel, "tensor " + w + ": quant_state lacks '" + key + "'");
    if (!(v->*is_type)()) fail(ErrorCode::BadModel, "tensor " + w + ": quant_state '" + key + "' must be " + type);
    return *v;
  };
  if (field("quant_type", &json::Value::is_string, "a string").as_string() != "nf4" ||
      field("blocksize", &json::Value::is_number, "a number").as_number() != kNf4BlockSize)
    fail(ErrorCode::BadModel, "tensor " + w + ": only nf4 with blocksize 64 is supported");
  const auto& shape = field("shape", &json::Value::is_array, "a list").as_array();
  if (shape.size() != 2 || !shape[0].is_number() || !shape[1].is_number() || shape[0].as_number() != out ||
      shape[1].as_number() != in)
    fail(ErrorCode::BadModel, "tensor " + w + ": quant_state shape does not match config.json");
  if (!state.find("nested_offset"))
    fail(ErrorCode::BadModel, "tensor " + w + ": only double-quantized (nested) NF4 is supported");
  const double nested = field("nested_offset", &json::Value::is_number, "a number").as_number();
  if (std::fabs(nested) > std::numeric_limits<float>::max())
    fail(ErrorCode::BadModel, "tensor " + w + ": quant_state nested_offset is outside the float range");
  const std::string& dt = field("dtype", &json::Value::is_string, "a string").as_string();
  if (dt != "float16" && dt != "bfloat16" && dt != "float32")
    fail(ErrorCode::BadModel,
         "tensor " + w + ": quant_state dtype " + json::quote(dt) + " is not float16, bfloat16 or float32");
  const Nf4StorageDType dtype = dt == "bfloat16"  ? Nf4StorageDType::BF16
                                : dt == "float32" ? Nf4StorageDType::F32
                                                  : Nf4StorageDType::F16;

  const int64_t n = int64_t(out) * in, blocks = (n + kNf4BlockSize - 1) / kNf4BlockSize;
  const TensorView& packed = wk.take(w);
  const TensorView& absmax = wk.take(w + ".absmax");
  const TensorView& absmax2 = wk.take(w + ".nested_absmax");
  const TensorView& code = wk.take(w + ".nested_quant_map");
  if (packed.dtype != DType::U8 || int64_t(packed.nbytes) != (n + 1) / 2)
    fail(ErrorCode::BadModel,
         "tensor " + w + ": packed NF4 data must be uint8 with " + std::to_string((n + 1) / 2) + " bytes");
  if (absmax.dtype != DType::U8 || int64_t(absmax.nbytes) != blocks)
    fail(ErrorCode::BadModel, "tensor " + w + ".absmax: expected " + std::to_string(blocks) + " uint8 values");
  const int64_t groups = (blocks + 255) / 256;
  if (absmax2.dtype != DType::F32 || absmax2.numel() != groups || code.dtype != DType::F32 || code.nbytes != 256 * 4)
    fail(ErrorCode::BadModel, "tensor " + w + ": nested_absmax (" + std::to_string(groups) +
                                  " values) / nested_quant_map (256 values) must be fp32");
  // The NF4 code table, when saved, must be bitsandbytes' (another 4-bit code would be decoded wrongly).
  if (const TensorView* table = wk.take_if_present(w + ".quant_map")) {
    const bool ok = table->dtype == DType::F32 && table->nbytes == 16 * 4 &&
                    std::memcmp(table->data, kNf4Table, 16 * sizeof(float)) == 0;
    if (!ok) fail(ErrorCode::BadModel, "tensor " + w + ".quant_map is not the NF4 code table");
  }
  L.quantized = true;
  wk.stats.n_params += n;
  wk.stats.checkpoint_bytes += packed.nbytes + absmax.nbytes + absmax2.nbytes + code.nbytes;
  wk.stats.quantized_linears++;
  if (wk.validate_only) return;
  std::vector<float> code_v = read_raw<float>(code);
  L.q = nf4_from_parts(out, in, read_raw<uint8_t>(packed), read_raw<uint8_t>(absmax), read_raw<float>(absmax2),
                       float(nested), code_v.data(), dtype);
}

// One linear layer: NF4 from a pre-quantized checkpoint, quantized now, or kept in fp32; then its bias.
// In a pre-quantized checkpoint a linear stored in 16 bits was skipped by bitsandbytes on purpose
// (llm_int8_skip_modules) and stays full precision, as transformers keeps it.
Linear load_linear(Walk& wk, const ModelConfig& c, const std::string& prefix, int out, int in, bool bias,
                   bool quantize) {
  Linear L;
  L.name = prefix;
  L.in = in;
  L.out = out;
  if (wk.ws.find(prefix + ".weight.absmax")) {
    load_prequantized(wk, L, prefix);
  } else {
    if (quantize && !c.prequantized) {
      const TensorView& t = wk.expect_float(prefix + ".weight", {out, in});
      L.quantized = true;
      wk.stats.quantized_linears++;
      if (!wk.validate_only) {
        // transformers casts every float checkpoint tensor to fp16 before bnb quantizes it
        // (docs/reference/precision.md#loading). Read in chunks from the file mapping: an fp32 copy of the whole
        // matrix would be fresh pages for every matrix (docs/performance.md#loading-a-checkpoint).
        L.q = nf4_quantize_streamed(out, in, Nf4StorageDType::F16, [&t](int64_t e0, int64_t e1, float* chunk) {
          tensor_slice_to_f32(t, e0, e1, chunk);
          round_fp16_inplace(chunk, e1 - e0);
        });
      }
    } else {
      L.w = wk.read_f32(prefix + ".weight", {out, in});
    }
  }
  if (bias) L.bias = wk.read_f32(prefix + ".bias", {out});
  return L;
}

void load_layer(Walk& wk, const ModelConfig& c, LayerWeights& L, int i, bool quantize) {
  const int C = c.hidden, F = c.intermediate, HD = c.head_dim;
  const int QD = c.n_heads * HD, KVD = c.n_kv_heads * HD;
  const std::string p = "model.layers." + std::to_string(i);
  L.input_norm = wk.read_f32(p + ".input_layernorm.weight", {C});
  L.post_norm = wk.read_f32(p + ".post_attention_layernorm.weight", {C});
  if (c.qk_norm) {
    L.q_norm = wk.read_f32(p + ".self_attn.q_norm.weight", {HD});
    L.k_norm = wk.read_f32(p + ".self_attn.k_norm.weight", {HD});
  }
  L.q = load_linear(wk, c, p + ".self_attn.q_proj", QD, C, c.qkv_bias, quantize);
  L.k = load_linear(wk, c, p + ".self_attn.k_proj", KVD, C, c.qkv_bias, quantize);
  L.v = load_linear(wk, c, p + ".self_attn.v_proj", KVD, C, c.qkv_bias, quantize);
  L.o = load_linear(wk, c, p + ".self_attn.o_proj", C, QD, c.o_bias, quantize);
  L.gate = load_linear(wk, c, p + ".mlp.gate_proj", F, C, false, quantize);
  L.up = load_linear(wk, c, p + ".mlp.up_proj", F, C, false, quantize);
  L.down = load_linear(wk, c, p + ".mlp.down_proj", C, F, false, quantize);
}

// Tensors a checkpoint may carry that the model does not use: RoPE caches old checkpoints saved
// (transformers ignores them on load), and a tied model's copy of lm_head (transformers ties it to the embedding).
bool ignorable(const std::string& name, const ModelConfig& c) {
  const std::string suffix = ".rotary_emb.inv_freq";
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
  return c.tie_embeddings && name == "lm_head.weight";
}

// Every tensor of the checkpoint must have been used: anything else is a model the config does not describe
// (a Qwen3 checkpoint labelled Qwen2 leaves its q_norm behind, biases without attention_bias, ...).
void check_all_used(const WeightSet& ws, const ModelConfig& c, const std::vector<Walk>& walks) {
  std::set<std::string> used;
  for (const Walk& w : walks) used.insert(w.used.begin(), w.used.end());
  for (const std::string& name : ws.names()) {
    if (used.count(name) || ignorable(name, c)) continue;
    const TensorView& t = ws.get(name);
    fail(ErrorCode::BadModel, "tensor " + json::escape(name) + " (in " + json::escape(t.file) + ") is not part of a " +
                                  c.architecture +
                                  " model as config.json describes it; refusing to compute without it");
  }
}

ModelWeights walk_checkpoint(const ModelConfig& c, const WeightSet& ws, bool quantize, bool validate_only,
                             LoadStats& stats, const std::function<void(double)>& progress) {
  ModelWeights m;
  m.config = c;
  const int C = c.hidden, V = c.vocab;
  const double total = c.n_layers + 2.0;
  std::vector<Walk> walks(size_t(c.n_layers) + 1, Walk{ws, validate_only, {}, {}});
  Walk& top = walks.back();

  // An NF4 model never updates its embedding; stored as bf16 and untied (so not lm_head's fp32 source either), it is
  // kept as its bf16 bits from the start, without an fp32 copy (docs/cpu-kernels.md#bf16-lm_head).
  const TensorView& embed = top.expect_float("model.embed_tokens.weight", {V, C});
  if (!validate_only && quantize && !c.tie_embeddings && embed.dtype == DType::BF16) {
    m.embed_bf16 = read_raw<uint16_t>(embed);
  } else {
    m.embed = top.widen(embed);
  }
  if (progress) progress(1.0 / total);
  m.layers.resize(size_t(c.n_layers));
  // Layers load and quantize in parallel (a 7B checkpoint is 224 matrices; one thread would take a minute), a
  // thread's worth of layers at a time so that progress is reported from this thread between groups.
  // A bad checkpoint names the first bad tensor in file order, whichever thread met an error first.
  std::vector<std::exception_ptr> layer_error(size_t(c.n_layers));
  const int group = validate_only ? c.n_layers : std::max(1, cpu_thread_count());
  for (int g0 = 0; g0 < c.n_layers; g0 += group) {
    const int g1 = std::min(c.n_layers, g0 + group);
    auto run = [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; j++) {
        const int i = g0 + int(j);
        try {
          load_layer(walks[size_t(i)], c, m.layers[size_t(i)], i, quantize);
        } catch (...) {
          layer_error[size_t(i)] = std::current_exception();
        }
      }
    };
    if (validate_only) run(0, g1 - g0);  // header checks only: not worth the pool
    else parallel_for(g1 - g0, 1, run);
    for (int i = g0; i < g1; i++)
      if (layer_error[size_t(i)]) std::rethrow_exception(layer_error[size_t(i)]);
    if (progress) progress((g1 + 1.0) / total);
  }
  m.final_norm = top.read_f32("model.norm.weight", {C});
  // Tied models may still ship an lm_head copy; untied ones must.
  if (!c.tie_embeddings) m.lm_head = top.read_f32("lm_head.weight", {V, C});
  check_all_used(ws, c, walks);
  if (progress) progress(1.0);

  for (const Walk& w : walks) {
    stats.n_params += w.stats.n_params;
    stats.checkpoint_bytes += w.stats.checkpoint_bytes;
    stats.quantized_linears += w.stats.quantized_linears;
  }
  if (stats.quantized_linears == 0 && !m.embed_bf16.empty()) {  // nothing quantized after all: trainable, so fp32
    m.embed.resize(m.embed_bf16.size());
    for (size_t i = 0; i < m.embed.size(); i++) m.embed[i] = bf16_to_f32(m.embed_bf16[i]);
    std::vector<uint16_t>().swap(m.embed_bf16);
  }
  uint64_t resident = (m.embed.size() + m.final_norm.size() + m.lm_head.size()) * sizeof(float) +
                      m.embed_bf16.size() * sizeof(uint16_t);
  for (const LayerWeights& L : m.layers) {
    resident += (L.input_norm.size() + L.post_norm.size() + L.q_norm.size() + L.k_norm.size()) * sizeof(float);
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) resident += l->resident_bytes();
  }
  stats.resident_bytes = resident;
  return m;
}

}  // namespace

uint64_t Linear::resident_bytes() const {
  return (quantized ? q.bytes() : w.size() * sizeof(float)) + bias.size() * sizeof(float);
}

ModelWeights load_weights(const ModelConfig& c, const WeightSet& ws, bool quantize, LoadStats& stats,
                          const std::function<void(double)>& progress) {
  return walk_checkpoint(c, ws, quantize, false, stats, progress);
}

LoadStats validate_weights(const ModelConfig& c, const WeightSet& ws, bool quantize) {
  LoadStats stats;
  walk_checkpoint(c, ws, quantize, true, stats, nullptr);
  return stats;
}

}  // namespace dpo
