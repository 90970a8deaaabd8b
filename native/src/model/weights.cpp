// Loads a Hugging Face checkpoint into ModelWeights: shape/dtype checks per tensor, fp16 cast + NF4 quantization
// of the seven linear kinds (spec §4.1), or bitsandbytes pre-quantized NF4 tensors read as they are (spec §2.6).
#include "model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
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

const TensorView& expect_tensor(const WeightSet& ws, const std::string& name, std::vector<int64_t> shape) {
  const TensorView& t = ws.get(name);
  if (t.shape != shape)
    fail(ErrorCode::BadModel, "tensor " + name + " has shape " + shape_str(t.shape) + " but config.json implies " +
                                  shape_str(shape) + " (in " + t.file + ")");
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    fail(ErrorCode::BadModel, "tensor " + name + " has dtype " + dtype_name(t.dtype) +
                                  "; expected F32, F16 or BF16 (in " + t.file + ")");
  return t;
}

std::vector<float> read_f32(const WeightSet& ws, const std::string& name, std::vector<int64_t> shape,
                            LoadStats& stats) {
  const TensorView& t = expect_tensor(ws, name, shape);
  std::vector<float> out(size_t(t.numel()));
  tensor_to_f32(t, out.data());
  stats.n_params += t.numel();
  stats.checkpoint_bytes += t.nbytes;
  return out;
}

template <typename T>
std::vector<T> read_raw(const TensorView& t) {
  std::vector<T> out(t.nbytes / sizeof(T));
  std::memcpy(out.data(), t.data, out.size() * sizeof(T));
  return out;
}

// A bitsandbytes `*-bnb-4bit` linear (spec §2.6): P.weight is uint8 packed nibbles, P.weight.absmax uint8 (nested)
// with nested_absmax / nested_quant_map, and the quant_state JSON with shape, dtype and nested_offset.
Linear load_prequantized(const WeightSet& ws, const std::string& prefix, int out, int in, LoadStats& stats) {
  const std::string w = prefix + ".weight";
  const TensorView* state_t = ws.find(w + ".quant_state.bitsandbytes__nf4");
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
    fail(ErrorCode::BadModel, "tensor " + w + ": quant_state dtype " + json::quote(dt) +
                                  " is not float16, bfloat16 or float32");
  Nf4StorageDType dtype = dt == "bfloat16" ? Nf4StorageDType::BF16
                          : dt == "float32" ? Nf4StorageDType::F32
                                            : Nf4StorageDType::F16;

  const int64_t n = int64_t(out) * in, blocks = (n + kNf4BlockSize - 1) / kNf4BlockSize;
  const TensorView& packed = ws.get(w);
  const TensorView& absmax = ws.get(w + ".absmax");
  const TensorView& absmax2 = ws.get(w + ".nested_absmax");
  const TensorView& code = ws.get(w + ".nested_quant_map");
  if (packed.dtype != DType::U8 || int64_t(packed.nbytes) != (n + 1) / 2)
    fail(ErrorCode::BadModel, "tensor " + w + ": packed NF4 data must be uint8 with " + std::to_string((n + 1) / 2) +
                                  " bytes");
  if (absmax.dtype != DType::U8 || int64_t(absmax.nbytes) != blocks)
    fail(ErrorCode::BadModel, "tensor " + w + ".absmax: expected " + std::to_string(blocks) + " uint8 values");
  if (absmax2.dtype != DType::F32 || code.dtype != DType::F32 || code.nbytes != 256 * 4)
    fail(ErrorCode::BadModel, "tensor " + w + ": nested_absmax / nested_quant_map must be fp32 (256-entry map)");
  std::vector<float> code_v = read_raw<float>(code);

  Linear L;
  L.name = prefix;
  L.in = in;
  L.out = out;
  L.quantized = true;
  L.q = nf4_from_parts(out, in, read_raw<uint8_t>(packed), read_raw<uint8_t>(absmax), read_raw<float>(absmax2),
                       float(nested), code_v.data(), dtype);
  stats.n_params += n;
  stats.checkpoint_bytes += packed.nbytes + absmax.nbytes + absmax2.nbytes + code.nbytes;
  stats.quantized_linears++;
  return L;
}

Linear load_linear(const WeightSet& ws, const std::string& prefix, int out, int in, bool bias, bool quantize,
                   LoadStats& stats) {
  if (ws.find(prefix + ".weight.absmax")) {
    // bnb keeps a 4-bit linear's bias as a plain tensor beside the quantized weight (Qwen2's q/k/v).
    Linear L = load_prequantized(ws, prefix, out, in, stats);
    if (bias) L.bias = read_f32(ws, prefix + ".bias", {out}, stats);
    return L;
  }
  Linear L;
  L.name = prefix;
  L.in = in;
  L.out = out;
  std::vector<float> w = read_f32(ws, prefix + ".weight", {out, in}, stats);
  if (quantize) {
    // transformers casts every float checkpoint tensor to fp16 before bnb quantizes it (spec §4.1).
    round_fp16_inplace(w.data(), int64_t(w.size()));
    L.q = nf4_quantize(w.data(), out, in, Nf4StorageDType::F16);
    L.quantized = true;
    stats.quantized_linears++;
  } else {
    L.w = std::move(w);
  }
  if (bias) L.bias = read_f32(ws, prefix + ".bias", {out}, stats);
  return L;
}

}  // namespace

uint64_t Linear::resident_bytes() const {
  return (quantized ? q.bytes() : w.size() * sizeof(float)) + bias.size() * sizeof(float);
}

ModelWeights load_weights(const ModelConfig& c, const WeightSet& ws, bool quantize, LoadStats& stats,
                          const std::function<void(double)>& progress) {
  ModelWeights m;
  m.config = c;
  const int C = c.hidden, F = c.intermediate, V = c.vocab;
  const int QD = c.n_heads * c.head_dim, KVD = c.n_kv_heads * c.head_dim;
  const double total = c.n_layers + 2.0;

  m.embed = read_f32(ws, "model.embed_tokens.weight", {V, C}, stats);
  if (progress) progress(1.0 / total);
  m.layers.resize(size_t(c.n_layers));
  // Layers load and quantize in parallel (a 7B checkpoint is 224 matrices; one thread would take a minute), a
  // thread's worth of layers at a time so that progress is reported from this thread between groups.
  // A bad checkpoint names the first bad tensor in file order, whichever thread met an error first.
  std::vector<LoadStats> layer_stats(size_t(c.n_layers));
  std::vector<std::exception_ptr> layer_error(size_t(c.n_layers));
  const int group = std::max(1, cpu_thread_count());
  for (int g0 = 0; g0 < c.n_layers; g0 += group) {
    const int g1 = std::min(c.n_layers, g0 + group);
    parallel_for(g1 - g0, 1, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; j++) {
        try {
          const int i = g0 + int(j);
          const std::string p = "model.layers." + std::to_string(i);
          LayerWeights& L = m.layers[size_t(i)];
          LoadStats& st = layer_stats[size_t(i)];
          L.input_norm = read_f32(ws, p + ".input_layernorm.weight", {C}, st);
          L.post_norm = read_f32(ws, p + ".post_attention_layernorm.weight", {C}, st);
          L.q = load_linear(ws, p + ".self_attn.q_proj", QD, C, c.qkv_bias, quantize, st);
          L.k = load_linear(ws, p + ".self_attn.k_proj", KVD, C, c.qkv_bias, quantize, st);
          L.v = load_linear(ws, p + ".self_attn.v_proj", KVD, C, c.qkv_bias, quantize, st);
          L.o = load_linear(ws, p + ".self_attn.o_proj", C, QD, c.o_bias, quantize, st);
          L.gate = load_linear(ws, p + ".mlp.gate_proj", F, C, false, quantize, st);
          L.up = load_linear(ws, p + ".mlp.up_proj", F, C, false, quantize, st);
          L.down = load_linear(ws, p + ".mlp.down_proj", C, F, false, quantize, st);
        } catch (...) {
          layer_error[size_t(g0 + j)] = std::current_exception();
        }
      }
    });
    for (int i = g0; i < g1; i++)
      if (layer_error[size_t(i)]) std::rethrow_exception(layer_error[size_t(i)]);
    if (progress) progress((g1 + 1.0) / total);
  }
  for (const LoadStats& st : layer_stats) {
    stats.n_params += st.n_params;
    stats.checkpoint_bytes += st.checkpoint_bytes;
    stats.quantized_linears += st.quantized_linears;
  }
  m.final_norm = read_f32(ws, "model.norm.weight", {C}, stats);
  // Tied models may still ship an lm_head copy; untied ones must.
  if (!c.tie_embeddings) m.lm_head = read_f32(ws, "lm_head.weight", {V, C}, stats);
  if (progress) progress(1.0);

  uint64_t resident = (m.embed.size() + m.final_norm.size() + m.lm_head.size()) * sizeof(float);
  for (const LayerWeights& L : m.layers) {
    resident += (L.input_norm.size() + L.post_norm.size()) * sizeof(float);
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) resident += l->resident_bytes();
  }
  stats.resident_bytes = resident;
  return m;
}

}  // namespace dpo
