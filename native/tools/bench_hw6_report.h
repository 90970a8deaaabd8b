// What `dpo-tool bench-hw6` measured, and how it is printed (markdown table) and saved (JSON).
#pragma once
#include <string>
#include <vector>

#include "dpo/engine.h"

namespace dpo::tool {

struct Hw6Results {
  // what ran
  std::string model, workload, tokenizer, backend, backend_note, engine, quant;
  int64_t params = 0;
  uint64_t checkpoint_bytes = 0, resident_bytes = 0;
  int pairs = 0, optimizer_steps = 0, prompts = 0, new_tokens = 0;
  double mean_pair_tokens = 0;  // chosen + rejected tokens per pair
  // load
  uint64_t cache_bytes = 0;     // bytes read to warm the page cache before the timed load (0 = not warmed)
  double cache_warm_s = 0, load_s = 0;
  MemoryStats mem_load;         // after load; peak = the load's peak
  // reference log-probs (adapter disabled), then training; each phase runs a cold pass over every pair, then the
  // warm pass the rates use (*_cold_s: the first; *_s: the second)
  // *_cpu_s: CPU seconds of the process (all threads) over the phase; steadier than wall time on a shared machine
  double ref_cold_s = 0, ref_cold_cpu_s = 0, ref_s = 0, ref_cpu_s = 0;
  std::vector<std::vector<double>> ref_logps;  // per pair: chosen, rejected (the peers' check, npm run bench:peers)
  double train_cold_s = 0, train_cold_cpu_s = 0, train_s = 0, train_cpu_s = 0;
  std::vector<double> step_loss, step_grad_norm;
  MemoryStats mem_train;        // peak over reference + training
  // generation
  double gen_warmup_s = 0, gen_batched_s = 0;
  int64_t gen_tokens = 0;
  double b1_prefill_s = 0, b1_total_s = 0;
  bool batch_invariant = false;  // prompt 0's tokens alone == its tokens in the batch
  int decode_steps = 0, replayed_steps = 0;  // batch-1 run: steps replayed from CUDA graphs (0 = graphs off/failed)
  MemoryStats mem_gen;

  double train_pairs_per_s() const { return pairs / train_s; }
  double run_pairs_per_s() const { return pairs / (ref_s + train_s); }
  double b1_decode_tokens_per_s() const;
};

void print_hw6_report(const Hw6Results& r);
std::string hw6_json(const Hw6Results& r);

}  // namespace dpo::tool
