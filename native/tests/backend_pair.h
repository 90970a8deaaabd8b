// Test helper: one tiny model loaded on the plain CPU backend and on the guarded one, and a bit-for-bit comparison
// of adapter tensors (the training and resume suites check the backend-memory paths with them).
#pragma once
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dpo/engine.h"

namespace dpo_test {

// Loads the model on the plain CPU backend and on the guarded one (DPO_BACKEND=cpu-guarded, restored afterwards).
// Both run the same CPU arithmetic, but on the guarded backend the optimizer step's state, weights and gradients are
// copies in (guarded) backend memory and the host copies are refreshed by download, as on a GPU.
inline std::pair<std::unique_ptr<dpo::Model>, std::unique_ptr<dpo::Model>> cpu_and_guarded(const std::string& dir) {
  const char* env = std::getenv("DPO_BACKEND");
  const std::string saved = env ? env : "";
  unsetenv("DPO_BACKEND");
  auto cpu = dpo::Model::load(dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  setenv("DPO_BACKEND", "cpu-guarded", 1);
  auto guarded = dpo::Model::load(dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  if (env) setenv("DPO_BACKEND", saved.c_str(), 1);
  else unsetenv("DPO_BACKEND");
  return {std::move(cpu), std::move(guarded)};
}

inline bool same_tensors(const std::vector<dpo::LoraTensor>& a, const std::vector<dpo::LoraTensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (a[i].name != b[i].name || a[i].data.size() != b[i].data.size() ||
        std::memcmp(a[i].data.data(), b[i].data.data(), a[i].data.size() * sizeof(float)) != 0)
      return false;
  return true;
}

}  // namespace dpo_test
