// `dpo-tool bench`: prefill tokens/s (one forward over B x T synthetic prompt tokens) and decode tokens/s
// (B sequences, N new tokens each) of greedy generation; the CPU table of BENCHMARKS.md comes from here.
#include <algorithm>
#include <cstdio>

#include "commands.h"

namespace dpo::tool {

int cmd_bench(const Args& a) {
  const std::string dir = get(a, "model");
  auto t0 = Clock::now();
  auto model = Model::load(dir, load_options(a));
  const double load_s = seconds_since(t0);
  const int T = get_int(a, "prompt-len", "64"), N = get_int(a, "new", "32");
  const int B = get_int(a, "batch", "1");
  const int V = model->info().config.vocab;
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) prompts[size_t(b)].push_back(t == 0 ? 1 : 3 + (t * 7919 + b * 104729) % (V - 3));

  GenerateOptions prefill_only;
  prefill_only.max_new_tokens = 1;
  model->generate(prompts, prefill_only);  // warm-up
  t0 = Clock::now();
  double c0 = process_cpu_seconds();
  model->generate(prompts, prefill_only);
  const double prefill_s = seconds_since(t0), prefill_cpu = process_cpu_seconds() - c0;

  GenerateOptions opt;
  opt.max_new_tokens = N;
  t0 = Clock::now();
  c0 = process_cpu_seconds();
  model->generate(prompts, opt);
  const double total_s = seconds_since(t0), total_cpu = process_cpu_seconds() - c0;
  // Tokens per CPU-second of the process, all threads together: the figure that stays put when other work shares
  // the cores (the wall-clock rate is what a user sees on an idle machine).
  const double decode_cpu = std::max(1e-9, total_cpu - prefill_cpu);
  const double decode_s = std::max(1e-9, total_s - prefill_s);
  const double prefill_tps = B * T / prefill_s, decode_tps = B * (N - 1) / decode_s;
  const auto& info = model->info();
  const char* quant = info.quant == QuantMode::Nf4 ? "nf4" : "none";
  std::printf("model %s (%.1fM params, %s, %.1f MiB resident) on %s\n", dir.c_str(), info.n_params / 1e6,
              info.quant == QuantMode::Nf4 ? "nf4" : "fp32", info.resident_bytes / 1048576.0, info.backend.c_str());
  const double decode_tpcs = B * (N - 1) / decode_cpu;
  std::printf("| load s | batch | prompt | new | prefill tok/s | decode tok/s | decode tok per CPU-s |\n");
  std::printf("| %.2f | %d | %d | %d | %.1f | %.1f | %.1f |\n", load_s, B, T, N, prefill_tps, decode_tps, decode_tpcs);
  if (a.count("json")) {
    JsonObject j;
    j.str("model", dir).integer("params", info.n_params).str("quant", quant).str("backend", info.backend);
    j.num("load_s", load_s).integer("batch", B).integer("prompt_len", T).integer("new_tokens", N);
    j.num("prefill_tokens_per_s", prefill_tps).num("decode_tokens_per_s", decode_tps);
    j.num("decode_tokens_per_cpu_s", decode_tpcs);
    write_file(a.at("json"), j.text() + "\n");
  }
  return 0;
}

}  // namespace dpo::tool
