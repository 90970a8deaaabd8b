// Prints the bench-hw6 measurements as a markdown table next to the issue-6 targets, and serialises them as JSON.
#include "bench_hw6_report.h"

#include <algorithm>
#include <cstdio>

#include "tool_common.h"

namespace dpo::tool {

namespace {

constexpr double kGiB = 1073741824.0;

std::string list(const std::vector<double>& v) {
  std::string s = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); i++) {
    std::snprintf(buf, sizeof buf, "%s%.6g", i ? ", " : "", v[i]);
    s += buf;
  }
  return s + "]";
}

std::string memory(const MemoryStats& m) {
  JsonObject j;
  j.integer("in_use_bytes", int64_t(m.in_use_bytes)).integer("peak_bytes", int64_t(m.peak_bytes));
  return j.text();
}

// GiB, or MiB below 1 GiB (small CPU models).
std::string bytes(uint64_t b) {
  char buf[32];
  if (b >= uint64_t(kGiB)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / kGiB);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", b / 1048576.0);
  return buf;
}

}  // namespace

double Hw6Results::b1_decode_tokens_per_s() const {
  return (new_tokens - 1) / std::max(1e-9, b1_total_s - b1_prefill_s);
}

void print_hw6_report(const Hw6Results& r) {
  std::printf("\nmodel %s: %.2fB params, %.2f GB on disk, %.2f GiB resident (%s) on %s\n", r.model.c_str(),
              r.params / 1e9, r.checkpoint_bytes / 1e9, r.resident_bytes / kGiB, r.quant.c_str(), r.backend.c_str());
  std::printf("backend note: %s\nworkload %s (tokenizer %s): %d pairs (%.1f tokens per pair), %d prompts x %d new\n",
              r.backend_note.c_str(), r.workload.c_str(), r.tokenizer.c_str(), r.pairs, r.mean_pair_tokens, r.prompts,
              r.new_tokens);
  std::printf(
      "cold passes (first over every pair shape; the rates below are the warm second pass): reference %.3f s, "
      "training %.3f s (lr 0, then a fresh adapter); generation warm-up %.3f s (all prompts, 2 tokens)\n",
      r.ref_cold_s, r.train_cold_s, r.gen_warmup_s);
  if (r.cache_bytes > 0)
    std::printf("page cache warmed before the load: %.2f GB read in %.2f s\n", r.cache_bytes / 1e9, r.cache_warm_s);
  std::printf("DPO loss per step: %s (step 1 is ln 2 = 0.6931 while lora_B = 0)\n\n", list(r.step_loss).c_str());

  std::printf("| measurement | value | issue-6 target (Breeze-7B shape, GPU) |\n|---|---|---|\n");
  std::printf("| load + quantize | %.2f s | < 3 s |\n", r.load_s);
  std::printf("| reference log-probs, %d pairs, warm | %.3f s (%.1f pairs/s) | |\n", r.pairs, r.ref_s,
              r.pairs / r.ref_s);
  std::printf("| same, cold (first pass) | %.3f s (%.1f pairs/s) | |\n", r.ref_cold_s, r.pairs / r.ref_cold_s);
  std::printf("| DPO training, %d pairs, %d optimizer steps, warm | %.3f s (%.2f pairs/s) | >= 40 pairs/s |\n", r.pairs,
              r.optimizer_steps, r.train_s, r.train_pairs_per_s());
  std::printf("| same, cold (first loop, lr 0) | %.3f s (%.2f pairs/s) | |\n", r.train_cold_s,
              r.pairs / r.train_cold_s);
  std::printf("| whole run incl. reference | %.3f s (%.2f pairs/s) | < 3 s |\n", r.ref_s + r.train_s,
              r.run_pairs_per_s());
  std::printf("| peak backend memory, reference + training | %s | < 6 GiB |\n", bytes(r.mem_train.peak_bytes).c_str());
  std::printf("| greedy generation, %d prompts x %d tokens, one batch | %.3f s (%.0f tok/s) | < 1 s |\n", r.prompts,
              r.new_tokens, r.gen_batched_s, r.gen_tokens / r.gen_batched_s);
  std::printf("| batch-1 decode, prompt 1 | %.1f tok/s | >= 400 tok/s |\n", r.b1_decode_tokens_per_s());
  std::printf("| decode steps replayed from a recording (CUDA graphs) | %d of %d | all, on CUDA |\n", r.replayed_steps,
              r.decode_steps);
  std::printf("| batch-invariant greedy tokens (prompt 1 alone == in the batch) | %s | yes |\n",
              r.batch_invariant ? "yes" : "NO");
  std::printf("| peak backend memory, generation | %s | |\n", bytes(r.mem_gen.peak_bytes).c_str());
}

std::string hw6_json(const Hw6Results& r) {
  JsonObject j;
  j.str("bench", "hw6").str("engine", r.engine).str("model", r.model).integer("params", r.params);
  j.integer("checkpoint_bytes", int64_t(r.checkpoint_bytes)).integer("resident_bytes", int64_t(r.resident_bytes));
  j.str("quant", r.quant).str("backend", r.backend).str("backend_note", r.backend_note);
  j.str("workload", r.workload).str("tokenizer", r.tokenizer).integer("pairs", r.pairs);
  j.num("mean_pair_tokens", r.mean_pair_tokens).integer("optimizer_steps", r.optimizer_steps);
  j.integer("cache_warm_bytes", int64_t(r.cache_bytes)).num("cache_warm_s", r.cache_warm_s).num("load_s", r.load_s);
  j.raw("memory_after_load", memory(r.mem_load));
  j.num("reference_cold_s", r.ref_cold_s).num("reference_cold_cpu_s", r.ref_cold_cpu_s);
  j.num("reference_s", r.ref_s).num("reference_cpu_s", r.ref_cpu_s);
  std::string ref = "[";
  char buf[64];
  for (size_t i = 0; i < r.ref_logps.size(); i++) {
    std::snprintf(buf, sizeof buf, "%s[%.9g, %.9g]", i ? ", " : "", r.ref_logps[i][0], r.ref_logps[i][1]);
    ref += buf;
  }
  j.raw("reference_logps", ref + "]");
  j.num("train_cold_s", r.train_cold_s).num("train_cold_cpu_s", r.train_cold_cpu_s);
  j.num("train_s", r.train_s).num("train_cpu_s", r.train_cpu_s);
  j.num("train_pairs_per_s", r.train_pairs_per_s()).num("run_pairs_per_s", r.run_pairs_per_s());
  j.raw("step_loss", list(r.step_loss)).raw("step_grad_norm", list(r.step_grad_norm));
  j.raw("memory_train", memory(r.mem_train));
  j.integer("prompts", r.prompts).integer("new_tokens", r.new_tokens).num("generate_warmup_s", r.gen_warmup_s);
  j.num("generate_batched_s", r.gen_batched_s).integer("generate_batched_tokens", r.gen_tokens);
  j.num("batch1_prefill_s", r.b1_prefill_s).num("batch1_total_s", r.b1_total_s);
  j.num("batch1_decode_tokens_per_s", r.b1_decode_tokens_per_s()).boolean("batch_invariant", r.batch_invariant);
  j.integer("batch1_decode_steps", r.decode_steps).integer("batch1_replayed_steps", r.replayed_steps);
  j.raw("memory_generate", memory(r.mem_gen));
  return j.text() + "\n";
}

}  // namespace dpo::tool
