// The native fuzz targets (docs/fuzzing.md): one harness per parser of user files, shared by the libFuzzer
// executables (fuzz_main.cpp) and by the regression replay that runs in ctest (tests/test_fuzz_regressions.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "dpo/errors.h"

namespace dpo::fuzz {

// A broken property: a parser accepted something it must refuse, or refused it without a clear, coded error.
// Deliberately not a std::runtime_error, so no harness can swallow it by accident.
class Violation : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

[[noreturn]]
void violation(const std::string& what);
inline void require(bool ok, const std::string& what) {
  if (!ok) violation(what);
}

// An EngineError is a clean refusal when it carries `code` and its message names `where` (the file) and is short
// enough to read; anything else is a Violation.
void expect_clean_refusal(const EngineError& e, ErrorCode code, const std::string& where);

// One harness: parses `data` the way the engine reads that kind of file and checks the result's invariants.
// Returns normally on a valid file or a clean refusal; throws Violation (or lets a foreign exception through).
using TargetFn = void (*)(const uint8_t* data, size_t size);

void fuzz_json(const uint8_t* data, size_t size);         // io/json: any document
void fuzz_safetensors(const uint8_t* data, size_t size);  // io/safetensors: a whole file image
void fuzz_model_config(const uint8_t* data, size_t size); // model/model_config: config.json
void fuzz_weights(const uint8_t* data, size_t size);  // model/weights: a checkpoint image for a fixed tiny config
void fuzz_quant_state(const uint8_t* data, size_t size);  // model/weights: the bnb quant_state JSON of one linear

struct Target {
  const char* name;
  TargetFn run;
};
inline constexpr Target kTargets[] = {
    {"json", fuzz_json},       {"safetensors", fuzz_safetensors}, {"model_config", fuzz_model_config},
    {"weights", fuzz_weights}, {"quant_state", fuzz_quant_state},
};

// Serial loading: the harness must be deterministic, and libFuzzer runs one input at a time anyway.
void use_one_thread();

}  // namespace dpo::fuzz
