// Builds the tiny fuzz model's checkpoints in memory (see fuzz_checkpoint.h).
#include "fuzz_checkpoint.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/half.h"
#include "quant/nf4.h"

namespace dpo::fuzz {

const char* const kQuantStateTensor = "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4";

const std::string& tiny_config_json() {
  static const std::string text =
      "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 8, "
      "\"intermediate_size\": 12, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
      "\"head_dim\": 4, \"vocab_size\": 16, \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-05, "
      "\"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"float32\"}";
  return text;
}

const ModelConfig& tiny_config() {
  static const ModelConfig c = parse_model_config(tiny_config_json(), "tiny fuzz model");
  return c;
}

namespace {

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<uint8_t> float_bytes(const std::vector<float>& v, DType dtype) {
  if (dtype == DType::F32) return bytes_of(v);
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); i++) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    h[i] = uint16_t(bits >> 16);  // the values below are exact in bf16 truncation's eyes: small dyadic fractions
  }
  return bytes_of(h);
}

// Deterministic small values with both signs: v[i] = ((i * 37) % 17 - 8) / 16.
std::vector<float> values(int64_t n, float offset) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) v[size_t(i)] = offset + float((i * 37) % 17 - 8) / 16.0f;
  return v;
}

void add_prequantized(std::vector<OwnedTensor>& out, const std::string& name, int64_t rows, int64_t cols) {
  std::vector<float> w = values(rows * cols, 0.0f);
  Nf4Matrix q = nf4_quantize(w.data(), rows, cols, Nf4StorageDType::F16);
  const std::vector<float> table(kNf4Table, kNf4Table + 16);
  const std::vector<float> code(dynamic_map_signed(), dynamic_map_signed() + 256);
  out.push_back({name, DType::U8, {int64_t(q.packed.size()), 1}, q.packed});
  out.push_back({name + ".absmax", DType::U8, {int64_t(q.absmax_q.size())}, q.absmax_q});
  out.push_back({name + ".nested_absmax", DType::F32, {int64_t(q.absmax2.size())}, bytes_of(q.absmax2)});
  out.push_back({name + ".quant_map", DType::F32, {16}, bytes_of(table)});
  out.push_back({name + ".nested_quant_map", DType::F32, {256}, bytes_of(code)});
  const std::string state = quant_state_json(rows, cols, q.absmax_offset);
  out.push_back({name + ".quant_state.bitsandbytes__nf4",
                 DType::U8,
                 {int64_t(state.size())},
                 std::vector<uint8_t>(state.begin(), state.end())});
}

}  // namespace

std::string quant_state_json(int64_t rows, int64_t cols, float nested_offset) {
  char json[400];
  std::snprintf(json, sizeof json,
                "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [%lld, %lld], "
                "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": %.9g}",
                (long long)rows, (long long)cols, double(nested_offset));
  return json;
}

std::vector<OwnedTensor> tiny_tensors(DType dtype, bool prequantized) {
  const ModelConfig& c = tiny_config();
  const int64_t C = c.hidden, F = c.intermediate, V = c.vocab;
  const int64_t QD = int64_t(c.n_heads) * c.head_dim, KVD = int64_t(c.n_kv_heads) * c.head_dim;
  std::vector<OwnedTensor> out;
  auto plain = [&](const std::string& name, std::vector<int64_t> shape, float offset) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    out.push_back({name, dtype, shape, float_bytes(values(n, offset), dtype)});
  };
  plain("model.embed_tokens.weight", {V, C}, 0.0f);
  plain("model.norm.weight", {C}, 1.0f);
  plain("lm_head.weight", {V, C}, 0.0f);
  for (int l = 0; l < c.n_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l);
    plain(p + ".input_layernorm.weight", {C}, 1.0f);
    plain(p + ".post_attention_layernorm.weight", {C}, 1.0f);
    const struct {
      const char* name;
      int64_t rows, cols;
    } linears[] = {{".self_attn.q_proj", QD, C}, {".self_attn.k_proj", KVD, C}, {".self_attn.v_proj", KVD, C},
                   {".self_attn.o_proj", C, QD}, {".mlp.gate_proj", F, C},      {".mlp.up_proj", F, C},
                   {".mlp.down_proj", C, F}};
    for (const auto& lin : linears) {
      if (prequantized) add_prequantized(out, p + lin.name + ".weight", lin.rows, lin.cols);
      else plain(p + lin.name + ".weight", {lin.rows, lin.cols}, 0.0f);
    }
  }
  return out;
}

std::vector<uint8_t> image_of(const std::vector<OwnedTensor>& tensors) {
  std::vector<TensorToWrite> views;
  for (const OwnedTensor& t : tensors) views.push_back({t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
  return encode_safetensors(views, {{"format", "pt"}});
}

}  // namespace dpo::fuzz
