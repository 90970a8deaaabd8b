// The libFuzzer entry point of one fuzz executable; DPO_FUZZ_FN (set per executable by CMake) names its harness.
// A harness that throws (a property Violation or any foreign exception) is reported as a crash with its message.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    DPO_FUZZ_FN(data, size);
  } catch (const dpo::fuzz::Violation& e) {
    std::fprintf(stderr, "\ndpo-fuzz: property violated: %s\n", e.what());
    std::abort();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\ndpo-fuzz: unexpected exception escaped the parser: %s\n", e.what());
    std::abort();
  }
  return 0;
}
