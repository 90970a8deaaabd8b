// Tiny family twins on disk (see tiny_checkpoint.h). Weights are normal draws scaled to keep activations O(1) through
// a random network (1/sqrt(fan_in) projections, norms near 1, small biases), rounded to bf16 as real checkpoints are.
#include "tiny_checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/half.h"
#include "dpo/errors.h"
#include "dpo/model_config.h"
#include "io/safetensors.h"
#include "json_write.h"
#include "quant/nf4.h"

namespace dpo::testkit {

namespace {

// What transformers writes for a bitsandbytes 4-bit checkpoint saved from a bf16 model (as the *-bnb-4bit
// repositories carry it).
const char* kBnbQuantizationConfig = R"({
  "_load_in_4bit": true,
  "_load_in_8bit": false,
  "bnb_4bit_compute_dtype": "bfloat16",
  "bnb_4bit_quant_storage": "uint8",
  "bnb_4bit_quant_type": "nf4",
  "bnb_4bit_use_double_quant": true,
  "llm_int8_enable_fp32_cpu_offload": false,
  "llm_int8_has_fp16_weight": false,
  "llm_int8_skip_modules": null,
  "llm_int8_threshold": 6.0,
  "load_in_4bit": true,
  "load_in_8bit": false,
  "quant_method": "bitsandbytes"
})";

void write_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) fail(ErrorCode::Io, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail(ErrorCode::Io, "cannot rename " + tmp + ": " + std::strerror(errno));
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::Io, "cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json::Value parse_or_fail(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const std::exception& e) {
    fail(ErrorCode::BadInput, what + " is not valid JSON: " + e.what());
  }
}

void make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    fail(ErrorCode::Io, "cannot create " + dir + ": " + std::strerror(errno));
}

// The family's tokenizer_config.json with the chat template the family publishes.
std::string tokenizer_config_for(const FamilyFixture& f, const std::string& tok_dir) {
  json::Value cfg = parse_or_fail(read_text(tok_dir + "/" + f.tokenizer + "/tokenizer_config.json"),
                                  std::string(f.tokenizer) + "/tokenizer_config.json");
  if (!f.chat_template) return json_dump(cfg);
  const std::string which = f.chat_template;
  if (which == "llama-3.1" || which == "llama-3.2") {
    cfg = json_with(cfg, "chat_template",
                    json::Value::make_string(which == "llama-3.1" ? kLlama31ChatTemplate : kLlama32ChatTemplate));
  } else if (which == "breeze") {
    const json::Value all = parse_or_fail(read_text(tok_dir + "/breeze-7b-instruct/chat_templates.json"),
                                          "breeze-7b-instruct/chat_templates.json");
    const json::Value* b = all.find("MediaTek-Research/Breeze-7B-Instruct-v1_0");
    if (!b || !b->find("chat_template")) fail(ErrorCode::BadInput, "no Breeze v1_0 template in chat_templates.json");
    cfg = json_with(cfg, "chat_template", *b->find("chat_template"));
    cfg = json_with(cfg, "pad_token", *b->find("pad_token"));
  }
  return json_dump(cfg);
}

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  float scale, offset;
  bool linear;  // a projection weight (quantized in a bnb twin)
};

std::vector<TensorPlan> plan_tensors(const ModelConfig& c) {
  const int C = c.hidden, F = c.intermediate, HD = c.head_dim;
  const int QD = c.n_heads * HD, KVD = c.n_kv_heads * HD;
  const float sc = 1.0f / std::sqrt(float(C)), sf = 1.0f / std::sqrt(float(F)), sq = 1.0f / std::sqrt(float(QD));
  std::vector<TensorPlan> t;
  // A tied embedding is also the output layer: scaled so that logits stay O(1), as an untied lm_head's are.
  t.push_back({"model.embed_tokens.weight", {c.vocab, C}, c.tie_embeddings ? 2 * sc : 1.0f, 0.0f, false});
  for (int l = 0; l < c.n_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l);
    t.push_back({p + ".input_layernorm.weight", {C}, 0.1f, 1.0f, false});
    t.push_back({p + ".self_attn.q_proj.weight", {QD, C}, 2 * sc, 0.0f, true});
    t.push_back({p + ".self_attn.k_proj.weight", {KVD, C}, 2 * sc, 0.0f, true});
    t.push_back({p + ".self_attn.v_proj.weight", {KVD, C}, sc, 0.0f, true});
    t.push_back({p + ".self_attn.o_proj.weight", {C, QD}, sq, 0.0f, true});
    if (c.qkv_bias) {
      t.push_back({p + ".self_attn.q_proj.bias", {QD}, 0.1f, 0.0f, false});
      t.push_back({p + ".self_attn.k_proj.bias", {KVD}, 0.1f, 0.0f, false});
      t.push_back({p + ".self_attn.v_proj.bias", {KVD}, 0.1f, 0.0f, false});
    }
    if (c.o_bias) t.push_back({p + ".self_attn.o_proj.bias", {C}, 0.1f, 0.0f, false});
    if (c.qk_norm) {
      t.push_back({p + ".self_attn.q_norm.weight", {HD}, 0.1f, 1.0f, false});
      t.push_back({p + ".self_attn.k_norm.weight", {HD}, 0.1f, 1.0f, false});
    }
    t.push_back({p + ".post_attention_layernorm.weight", {C}, 0.1f, 1.0f, false});
    t.push_back({p + ".mlp.gate_proj.weight", {F, C}, sc, 0.0f, true});
    t.push_back({p + ".mlp.up_proj.weight", {F, C}, sc, 0.0f, true});
    t.push_back({p + ".mlp.down_proj.weight", {C, F}, sf, 0.0f, true});
  }
  t.push_back({"model.norm.weight", {C}, 0.1f, 1.0f, false});
  if (!c.tie_embeddings) t.push_back({"lm_head.weight", {c.vocab, C}, sc, 0.0f, false});
  return t;
}

}  // namespace

std::string shrunk_config(const FamilyFixture& f, const std::string& overrides) {
  json::Value cfg = parse_or_fail(f.config_json, std::string(f.name) + " config");
  const Shrink& s = f.shrink;
  auto num = [](int v) { return json::Value::make_number(double(v)); };
  cfg = json_with(cfg, "hidden_size", num(s.hidden));
  cfg = json_with(cfg, "num_hidden_layers", num(s.layers));
  cfg = json_with(cfg, "num_attention_heads", num(s.heads));
  cfg = json_with(cfg, "num_key_value_heads", num(s.kv_heads));
  cfg = json_with(cfg, "intermediate_size", num(s.intermediate));
  if (s.head_dim) cfg = json_with(cfg, "head_dim", num(s.head_dim));
  if (!overrides.empty()) {
    const json::Value extra = parse_or_fail(overrides, "config overrides");
    if (!extra.is_object()) fail(ErrorCode::BadInput, "config overrides must be a JSON object");
    for (const std::string& k : extra.keys()) {
      const json::Value& v = *extra.find(k);
      cfg = v.is_null() ? json_without(cfg, k) : json_with(cfg, k, v);
    }
  }
  return json_dump(cfg) + "\n";
}

TinyCheckpoint write_family_checkpoint(const FamilyFixture& f, const std::string& dir, const TinyCheckpointOptions& o) {
  TinyCheckpoint out;
  out.dir = dir;
  make_dir(dir);
  std::string config = shrunk_config(f, o.config_overrides);
  if (o.bnb_4bit) {
    json::Value cfg = parse_or_fail(config, "config");
    json::Value q = parse_or_fail(kBnbQuantizationConfig, "quantization_config");
    if (!o.bnb_skip.empty()) {
      std::vector<json::Value> skip;
      for (const std::string& s : o.bnb_skip) skip.push_back(json::Value::make_string(s));
      q = json_with(q, "llm_int8_skip_modules", json::Value::make_array(skip));
    }
    config = json_dump(json_with(cfg, "quantization_config", q)) + "\n";
  }
  const ModelConfig c = parse_model_config(config, dir + "/config.json");

  std::mt19937 rng(uint32_t(o.seed));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<TensorToWrite> tensors;
  std::vector<std::vector<uint8_t>> bytes;  // storage kept alive until written
  std::vector<TensorPlan> plan = plan_tensors(c);
  bytes.reserve(plan.size() * 6);
  const std::vector<float> nf4_table(kNf4Table, kNf4Table + 16);
  auto keep = [&](std::vector<uint8_t> b) -> const std::vector<uint8_t>& {
    bytes.push_back(std::move(b));
    return bytes.back();
  };
  auto keep_floats = [&](const float* p, size_t n) -> const std::vector<uint8_t>& {
    std::vector<uint8_t> b(n * sizeof(float));
    std::memcpy(b.data(), p, b.size());
    return keep(std::move(b));
  };
  for (const TensorPlan& t : plan) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = o.float32 ? t.offset + t.scale * normal(rng) : round_bf16(t.offset + t.scale * normal(rng));
    out.shapes[t.name] = t.shape;
    const std::string prefix = t.linear ? t.name.substr(0, t.name.size() - 7) : "";  // without ".weight"
    bool skipped = false;
    for (const std::string& s : o.bnb_skip) skipped = skipped || s == prefix;
    if (o.bnb_4bit && t.linear && !skipped) {
      // bitsandbytes quantizes the bf16 weight as stored; the quant state remembers bf16
      // (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints).
      const Nf4Matrix q = nf4_quantize(v.data(), t.shape[0], t.shape[1], Nf4StorageDType::BF16);
      std::vector<float> deq(v.size());
      nf4_dequantize(q, deq.data());
      out.values[t.name] = deq;
      out.quantized.push_back(t.name);
      const auto& packed = keep(q.packed);
      tensors.push_back({t.name, DType::U8, {int64_t(packed.size()), 1}, packed.data(), packed.size()});
      const auto& absmax = keep(q.absmax_q);
      tensors.push_back({t.name + ".absmax", DType::U8, {int64_t(absmax.size())}, absmax.data(), absmax.size()});
      const auto& nested = keep_floats(q.absmax2.data(), q.absmax2.size());
      tensors.push_back(
          {t.name + ".nested_absmax", DType::F32, {int64_t(q.absmax2.size())}, nested.data(), nested.size()});
      const auto& table = keep_floats(nf4_table.data(), 16);
      tensors.push_back({t.name + ".quant_map", DType::F32, {16}, table.data(), table.size()});
      const auto& code = keep_floats(dynamic_map_signed(), 256);
      tensors.push_back({t.name + ".nested_quant_map", DType::F32, {256}, code.data(), code.size()});
      char state[400];
      std::snprintf(state, sizeof state,
                    "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [%lld, %lld], "
                    "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": %.9g}",
                    (long long)t.shape[0], (long long)t.shape[1], double(q.absmax_offset));
      const auto& st = keep(std::vector<uint8_t>(state, state + std::strlen(state)));
      tensors.push_back(
          {t.name + ".quant_state.bitsandbytes__nf4", DType::U8, {int64_t(st.size())}, st.data(), st.size()});
      continue;
    }
    out.values[t.name] = v;
    if (o.float32) {
      const auto& b = keep_floats(v.data(), v.size());
      tensors.push_back({t.name, DType::F32, t.shape, b.data(), b.size()});
    } else {
      std::vector<uint8_t> b(v.size() * 2);
      for (size_t i = 0; i < v.size(); i++) {
        const uint16_t h = f32_to_bf16(v[i]);
        std::memcpy(b.data() + 2 * i, &h, 2);
      }
      const auto& kept = keep(std::move(b));
      tensors.push_back({t.name, DType::BF16, t.shape, kept.data(), kept.size()});
    }
  }
  write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  write_text(dir + "/config.json", config);
  write_text(dir + "/generation_config.json", json_dump(parse_or_fail(f.generation_json, "generation config")) + "\n");
  if (!o.tokenizers_dir.empty()) {
    const std::string src = o.tokenizers_dir + "/" + f.tokenizer;
    write_text(dir + "/tokenizer.json", read_text(src + "/tokenizer.json"));
    write_text(dir + "/tokenizer_config.json", tokenizer_config_for(f, o.tokenizers_dir) + "\n");
  }
  out.config_json = config;
  return out;
}

}  // namespace dpo::testkit
