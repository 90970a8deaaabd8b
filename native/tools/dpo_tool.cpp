// dpo-tool: the engine without Node, for GPU machines and benchmarks.
//   dpo-tool info
//   dpo-tool generate --model DIR --ids 1,2,3 [--quant nf4|none] [--backend auto|cpu|cuda] [--max-new N]
//   dpo-tool make-model --out DIR [--hidden C --layers L --heads NH --kv-heads NKV --ffn F --vocab V] (random bf16)
//   dpo-tool bench --model DIR [--quant nf4|none] [--prompt-len T] [--new N] [--batch B] [--json FILE]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/half.h"
#include "dpo/engine.h"
#include "io/safetensors.h"

namespace {

using Args = std::map<std::string, std::string>;

Args parse_args(int argc, char** argv, int from) {
  Args a;
  for (int i = from; i < argc; i++) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) throw dpo::EngineError(dpo::ErrorCode::BadInput, "unexpected argument " + k);
    a[k.substr(2)] = (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) ? argv[++i] : "1";
  }
  return a;
}

std::string get(const Args& a, const std::string& k, const std::string& def = "") {
  auto it = a.find(k);
  if (it != a.end()) return it->second;
  if (def.empty()) throw dpo::EngineError(dpo::ErrorCode::BadInput, "missing --" + k);
  return def;
}

dpo::LoadOptions load_options(const Args& a) {
  dpo::LoadOptions o;
  std::string q = get(a, "quant", "nf4"), b = get(a, "backend", "auto");
  o.quant = q == "none" ? dpo::QuantMode::None : dpo::QuantMode::Nf4;
  o.backend = b == "cpu" ? dpo::BackendChoice::Cpu : b == "cuda" ? dpo::BackendChoice::Cuda : dpo::BackendChoice::Auto;
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int cmd_info() {
  dpo::BackendInfo b = dpo::probe_backends();
  std::printf("engine %s\ncpu: %d threads\n", dpo::engine_version().c_str(), b.cpu_threads);
  if (b.cuda_available)
    std::printf("cuda: %s, %.1f GiB free of %.1f GiB\n", b.cuda_device.c_str(), b.cuda_free_bytes / 1073741824.0,
                b.cuda_total_bytes / 1073741824.0);
  else
    std::printf("cuda: unavailable (%s)\n", b.cuda_reason.c_str());
  return 0;
}

int cmd_generate(const Args& a) {
  auto model = dpo::Model::load(get(a, "model"), load_options(a));
  std::vector<int32_t> ids;
  std::stringstream ss(get(a, "ids"));
  for (std::string x; std::getline(ss, x, ',');) ids.push_back(std::stoi(x));
  dpo::GenerateOptions opt;
  opt.max_new_tokens = std::stoi(get(a, "max-new", "32"));
  opt.eos_ids = model->info().config.eos_token_ids;
  auto r = model->generate({ids}, opt);
  for (size_t i = 0; i < r.tokens[0].size(); i++) std::printf("%s%d", i ? "," : "", r.tokens[0][i]);
  std::printf("\n");
  return 0;
}

// A random Llama in bf16 safetensors, for benchmarks at a chosen shape.
int cmd_make_model(const Args& a) {
  const std::string dir = get(a, "out");
  const int C = std::stoi(get(a, "hidden", "768")), L = std::stoi(get(a, "layers", "12"));
  const int NH = std::stoi(get(a, "heads", "12")), NKV = std::stoi(get(a, "kv-heads", "4"));
  const int F = std::stoi(get(a, "ffn", "2048")), V = std::stoi(get(a, "vocab", "32000")), HD = C / NH;
  std::string mk = "mkdir -p '" + dir + "'";
  if (std::system(mk.c_str()) != 0) throw dpo::EngineError(dpo::ErrorCode::Io, "cannot create " + dir);
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<uint16_t>>> t;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, float scale, float offset) {
    int64_t cnt = 1;
    for (int64_t d : shape) cnt *= d;
    std::vector<uint16_t> v(static_cast<size_t>(cnt));
    for (auto& x : v) x = dpo::f32_to_bf16(offset + scale * nd(rng));
    t[n] = {shape, std::move(v)};
  };
  add("model.embed_tokens.weight", {V, C}, 1.0f, 0.0f);
  for (int l = 0; l < L; l++) {
    std::string p = "model.layers." + std::to_string(l);
    float s = 1.0f / std::sqrt(float(C));
    add(p + ".input_layernorm.weight", {C}, 0.05f, 1.0f);
    add(p + ".post_attention_layernorm.weight", {C}, 0.05f, 1.0f);
    add(p + ".self_attn.q_proj.weight", {NH * HD, C}, s, 0.0f);
    add(p + ".self_attn.k_proj.weight", {NKV * HD, C}, s, 0.0f);
    add(p + ".self_attn.v_proj.weight", {NKV * HD, C}, s, 0.0f);
    add(p + ".self_attn.o_proj.weight", {C, NH * HD}, s, 0.0f);
    add(p + ".mlp.gate_proj.weight", {F, C}, s, 0.0f);
    add(p + ".mlp.up_proj.weight", {F, C}, s, 0.0f);
    add(p + ".mlp.down_proj.weight", {C, F}, 1.0f / std::sqrt(float(F)), 0.0f);
  }
  add("model.norm.weight", {C}, 0.05f, 1.0f);
  add("lm_head.weight", {V, C}, 1.0f / std::sqrt(float(C)), 0.0f);
  std::vector<dpo::TensorToWrite> w;
  int64_t params = 0;
  for (auto& [n, sv] : t) {
    w.push_back({n, dpo::DType::BF16, sv.first, sv.second.data(), sv.second.size() * 2});
    params += int64_t(sv.second.size());
  }
  dpo::write_safetensors(dir + "/model.safetensors", w, {{"format", "pt"}});
  std::ofstream cfg(dir + "/config.json");
  cfg << "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": " << C
      << ", \"num_hidden_layers\": " << L << ", \"num_attention_heads\": " << NH << ", \"num_key_value_heads\": " << NKV
      << ", \"intermediate_size\": " << F << ", \"vocab_size\": " << V
      << ", \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"bos_token_id\": 1,"
         " \"eos_token_id\": 2, \"torch_dtype\": \"bfloat16\"}\n";
  std::printf("wrote %s: %.1fM parameters\n", dir.c_str(), params / 1e6);
  return 0;
}

// Prefill tokens/s (one forward over B x T prompt tokens) and decode tokens/s (B sequences, N new tokens each).
int cmd_bench(const Args& a) {
  const std::string dir = get(a, "model");
  auto t0 = std::chrono::steady_clock::now();
  auto model = dpo::Model::load(dir, load_options(a));
  const double load_s = seconds_since(t0);
  const int T = std::stoi(get(a, "prompt-len", "64")), N = std::stoi(get(a, "new", "32"));
  const int B = std::stoi(get(a, "batch", "1"));
  const int V = model->info().config.vocab;
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) prompts[size_t(b)].push_back(t == 0 ? 1 : 3 + (t * 7919 + b * 104729) % (V - 3));

  dpo::GenerateOptions prefill_only;
  prefill_only.max_new_tokens = 1;
  model->generate(prompts, prefill_only);  // warm-up
  t0 = std::chrono::steady_clock::now();
  model->generate(prompts, prefill_only);
  const double prefill_s = seconds_since(t0);

  dpo::GenerateOptions opt;
  opt.max_new_tokens = N;
  t0 = std::chrono::steady_clock::now();
  auto r = model->generate(prompts, opt);
  const double total_s = seconds_since(t0);
  const double decode_s = std::max(1e-9, total_s - prefill_s);
  const double prefill_tps = B * T / prefill_s, decode_tps = B * (N - 1) / decode_s;
  const auto& info = model->info();
  std::printf("model %s (%.1fM params, %s, %.1f MiB resident) on %s\n", dir.c_str(), info.n_params / 1e6,
              info.quant == dpo::QuantMode::Nf4 ? "nf4" : "fp32", info.resident_bytes / 1048576.0,
              info.backend.c_str());
  std::printf("| load s | batch | prompt | new | prefill tok/s | decode tok/s |\n");
  std::printf("| %.2f | %d | %d | %d | %.1f | %.1f |\n", load_s, B, T, N, prefill_tps, decode_tps);
  if (a.count("json")) {
    std::ofstream j(a.at("json"));
    j << "{\"model\": \"" << dir << "\", \"params\": " << info.n_params << ", \"quant\": \""
      << (info.quant == dpo::QuantMode::Nf4 ? "nf4" : "none") << "\", \"backend\": \"" << info.backend
      << "\", \"load_s\": " << load_s << ", \"batch\": " << B << ", \"prompt_len\": " << T << ", \"new_tokens\": " << N
      << ", \"prefill_tokens_per_s\": " << prefill_tps << ", \"decode_tokens_per_s\": " << decode_tps << "}\n";
  }
  (void)r;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: dpo-tool info | generate | make-model | bench  (see the header of dpo_tool.cpp)\n");
    return 2;
  }
  try {
    const std::string cmd = argv[1];
    Args a = parse_args(argc, argv, 2);
    if (cmd == "info") return cmd_info();
    if (cmd == "generate") return cmd_generate(a);
    if (cmd == "make-model") return cmd_make_model(a);
    if (cmd == "bench") return cmd_bench(a);
    std::fprintf(stderr, "dpo-tool: unknown command %s\n", cmd.c_str());
    return 2;
  } catch (const dpo::EngineError& e) {
    std::fprintf(stderr, "dpo-tool: error [%s]: %s\n", e.code_name(), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpo-tool: error: %s\n", e.what());
    return 1;
  }
}
