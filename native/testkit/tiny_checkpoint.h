// Writes a tiny random twin of a real model family (family_fixtures.h): the published config.json with only the sizes
// shrunk, the published generation_config.json, random weights stored as the family stores them (bf16), optionally in
// bitsandbytes' pre-quantized NF4 layout (*-bnb-4bit, docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints), and
// the family's real tokenizer files. Used by the native tests, `dpo-tool make-model --family`, and through it the
// TypeScript and reference-stack suites.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "family_fixtures.h"
#include "io/json.h"

namespace dpo::testkit {

struct TinyCheckpointOptions {
  uint64_t seed = 1234;
  bool bnb_4bit = false;                // linears in bitsandbytes' pre-quantized NF4 layout
  std::vector<std::string> bnb_skip;    // linear prefixes ("model.layers.0.mlp.down_proj") a bnb twin keeps 16-bit
  bool float32 = false;                 // store F32 tensors instead of the family's bf16
  std::string tokenizers_dir;           // shared/tokenizers: when set, the family's tokenizer files are written too
  std::string config_overrides;         // a JSON object whose keys replace config.json's (null values remove keys)
};

struct TinyCheckpoint {
  std::string dir;
  std::string config_json;                                // config.json as written
  // Per tensor: the values the engine computes with, in fp32: the stored (bf16-exact) values, and for a bnb twin's
  // NF4 linears the dequantized weights (before the matmul's bf16 rounding).
  std::map<std::string, std::vector<float>> values;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::vector<std::string> quantized;                     // weight names stored as NF4 (bnb twins)
};

// The family's config.json with the twin's sizes (and `overrides`), as text.
std::string shrunk_config(const FamilyFixture& f, const std::string& overrides = "");

// Writes the twin into `dir` (created when missing). Throws EngineError on I/O failure or a bad override.
TinyCheckpoint write_family_checkpoint(const FamilyFixture& f, const std::string& dir, const TinyCheckpointOptions& o);

}  // namespace dpo::testkit
