// `dpo-tool make-model`: a random checkpoint at a chosen shape, for benchmarks. --arch llama (default: a small
// 100M-class Llama) or --arch mistral (default: the Breeze-7B-Instruct shape of docs/reference/model.md#architecture —
// hidden 4096, 32 layers, 32/8 heads, FFN 14336, vocab 61952, untied lm_head), bf16 safetensors, sharded with --shards
// N.
// --family NAME instead writes the tiny twin of a tested family (testkit/family_fixtures.h: its real config.json and
// generation_config.json with the sizes shrunk, bf16 or --bnb-4bit weights, and with --tokenizers DIR the family's
// real tokenizer and chat template) for tests and the reference-stack suites.
#include <cmath>
#include <cstdio>
#include <thread>

#include "commands.h"
#include "random_checkpoint.h"
#include "tiny_checkpoint.h"

namespace dpo::tool {

namespace {

struct Shape {
  int C, L, NH, NKV, F, V;
};

// Per-tensor scales keep activations O(1) through the random network: 1/sqrt(fan_in) for projections, norms near 1.
std::vector<RandomTensor> decoder_tensors(const Shape& s) {
  const int HD = s.C / s.NH;
  const float sc = 1.0f / std::sqrt(float(s.C)), sf = 1.0f / std::sqrt(float(s.F));
  std::vector<RandomTensor> t;
  t.push_back({"model.embed_tokens.weight", {s.V, s.C}, 1.0f, 0.0f});
  for (int l = 0; l < s.L; l++) {
    const std::string p = "model.layers." + std::to_string(l);
    t.push_back({p + ".input_layernorm.weight", {s.C}, 0.05f, 1.0f});
    t.push_back({p + ".self_attn.q_proj.weight", {int64_t(s.NH) * HD, s.C}, sc, 0.0f});
    t.push_back({p + ".self_attn.k_proj.weight", {int64_t(s.NKV) * HD, s.C}, sc, 0.0f});
    t.push_back({p + ".self_attn.v_proj.weight", {int64_t(s.NKV) * HD, s.C}, sc, 0.0f});
    t.push_back({p + ".self_attn.o_proj.weight", {s.C, int64_t(s.NH) * HD}, sc, 0.0f});
    t.push_back({p + ".post_attention_layernorm.weight", {s.C}, 0.05f, 1.0f});
    t.push_back({p + ".mlp.gate_proj.weight", {s.F, s.C}, sc, 0.0f});
    t.push_back({p + ".mlp.up_proj.weight", {s.F, s.C}, sc, 0.0f});
    t.push_back({p + ".mlp.down_proj.weight", {s.C, s.F}, sf, 0.0f});
  }
  t.push_back({"model.norm.weight", {s.C}, 0.05f, 1.0f});
  t.push_back({"lm_head.weight", {s.V, s.C}, sc, 0.0f});
  return t;
}

// config.json as transformers writes it for the family; sliding_window null: every sequence here is far shorter
// than Mistral's 4096-token window, and the engine has no sliding window, so both stacks compute the same thing.
std::string config_json(bool mistral, const Shape& s) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n  \"hidden_size\": %d,\n"
                "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
                "  \"head_dim\": %d,\n  \"intermediate_size\": %d,\n  \"vocab_size\": %d,\n"
                "  \"max_position_embeddings\": %d,\n%s  \"hidden_act\": \"silu\",\n  \"rms_norm_eps\": 1e-05,\n"
                "  \"rope_theta\": 10000.0,\n  \"attention_dropout\": 0.0,\n  \"initializer_range\": 0.02,\n"
                "  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
                "  \"use_cache\": true,\n  \"torch_dtype\": \"bfloat16\"\n}\n",
                mistral ? "MistralForCausalLM" : "LlamaForCausalLM", mistral ? "mistral" : "llama", s.C, s.L, s.NH,
                s.NKV, s.C / s.NH, s.F, s.V, mistral ? 32768 : 4096, mistral ? "  \"sliding_window\": null,\n" : "");
  return buf;
}

// --family: the tiny twin of a tested model family.
int make_family_model(const Args& a, const std::string& dir) {
  const testkit::FamilyFixture& f = testkit::family(get(a, "family"));
  testkit::TinyCheckpointOptions o;
  o.seed = uint64_t(std::stoull(get(a, "seed", "1234")));
  o.bnb_4bit = a.count("bnb-4bit") > 0;
  o.float32 = a.count("float32") > 0;
  if (a.count("tokenizers")) o.tokenizers_dir = get(a, "tokenizers");
  if (a.count("config")) o.config_overrides = get(a, "config");
  if (a.count("bnb-skip")) {
    std::string list = get(a, "bnb-skip");
    for (size_t at = 0; at <= list.size();) {
      const size_t comma = std::min(list.find(',', at), list.size());
      if (comma > at) o.bnb_skip.push_back(list.substr(at, comma - at));
      at = comma + 1;
    }
  }
  const testkit::TinyCheckpoint t = testkit::write_family_checkpoint(f, dir, o);
  std::printf("wrote %s: tiny %s twin (%s)%s%s, %zu tensors\n", dir.c_str(), f.name, f.repo,
              o.bnb_4bit ? ", bitsandbytes NF4" : "", o.tokenizers_dir.empty() ? "" : ", with tokenizer",
              t.values.size());
  return 0;
}

}  // namespace

int cmd_make_model(const Args& a) {
  const std::string dir = get(a, "out");
  if (a.count("family")) return make_family_model(a, dir);
  const std::string arch = get(a, "arch", "llama");
  if (arch != "llama" && arch != "mistral") throw EngineError(ErrorCode::BadInput, "--arch must be llama or mistral");
  const bool mistral = arch == "mistral";
  Shape s;
  s.C = get_int(a, "hidden", mistral ? "4096" : "768");
  s.L = get_int(a, "layers", mistral ? "32" : "12");
  s.NH = get_int(a, "heads", mistral ? "32" : "12");
  s.NKV = get_int(a, "kv-heads", mistral ? "8" : "4");
  s.F = get_int(a, "ffn", mistral ? "14336" : "2048");
  s.V = get_int(a, "vocab", mistral ? "61952" : "32000");
  if (s.C <= 0 || s.L <= 0 || s.NH <= 0 || s.NKV <= 0 || s.F <= 0 || s.V <= 0 || s.C % s.NH != 0 || s.NH % s.NKV != 0)
    throw EngineError(ErrorCode::BadInput, "bad shape: hidden must divide by heads and heads by kv-heads");
  const int shards = get_int(a, "shards", "1");
  const int threads = get_int(a, "threads", std::to_string(std::max(1u, std::thread::hardware_concurrency())));
  const uint64_t seed = uint64_t(std::stoull(get(a, "seed", "1234")));

  CheckpointStats st = write_random_checkpoint(dir, decoder_tensors(s), shards, seed, threads);
  write_file(dir + "/config.json", config_json(mistral, s));
  std::printf("wrote %s: %s, %.1fM parameters, %.2f GB bf16 in %d file(s), %.1f s (%.2f GB/s, %d threads)\n",
              dir.c_str(), mistral ? "MistralForCausalLM" : "LlamaForCausalLM", st.params / 1e6, st.bytes / 1e9,
              st.shards, st.seconds, st.bytes / 1e9 / std::max(st.seconds, 1e-9), threads);
  return 0;
}

}  // namespace dpo::tool
