// The HW6 benchmark workload as token ids (written by scripts/bench/makeWorkload.ts with the app's own tokenization:
// docs/reference/chat-template.md, docs/reference/dpo-data.md):
// {"tokenizer", "pad_id", "eos_ids", "pairs": [{"chosen": {"ids", "labels"}, "rejected": {...}}],
// "prompts": [[ids...]]}. Other keys (notes, statistics) are ignored here.
#pragma once
#include <string>
#include <vector>

#include "dpo/engine.h"

namespace dpo::tool {

struct Workload {
  std::string tokenizer;
  int32_t pad_id = 0;
  std::vector<int> eos_ids;
  std::vector<DpoPair> pairs;  // ref_chosen / ref_rejected still 0
  std::vector<std::vector<int32_t>> prompts;
};

// Throws E_BAD_INPUT naming the file and the field on a malformed workload.
Workload read_workload(const std::string& path);

}  // namespace dpo::tool
