// Test helper: an attached adapter's lora_B drawn at random. PEFT starts lora_B at zero, which leaves every lora_A
// gradient zero; the gradient tests want both factors exercised.
#pragma once
#include <random>
#include <string>
#include <vector>

#include "dpo/engine.h"

namespace dpo_test {

// Draws every lora_B entry from N(0, sd) with generator `seed`, sets the tensors, and returns them.
inline std::vector<dpo::LoraTensor> randomize_lora_b(dpo::Model& model, unsigned seed, float sd = 0.3f) {
  auto t = model.lora_tensors();
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  for (auto& x : t)
    if (x.name.find("lora_B") != std::string::npos)
      for (float& v : x.data) v = nd(g);
  model.set_lora_tensors(t);
  return t;
}

}  // namespace dpo_test
