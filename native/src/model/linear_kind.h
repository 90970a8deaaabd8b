// The seven linear kinds of a decoder layer, in PEFT's named_modules order (self_attn q,k,v,o; mlp gate,up,down),
// which is also the order LoRA initialisation draws its random numbers in
// (docs/reference/lora.md#initialisation-and-its-random-numbers).
#pragma once
#include <string>

namespace dpo {

enum LinearKind { kQ, kK, kV, kO, kGate, kUp, kDown, kNumLinear };

inline const char* linear_kind_name(int k) {
  static const char* names[kNumLinear] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names[k];
}

// "self_attn" or "mlp": the module that holds the linear in Hugging Face / PEFT names.
inline const char* linear_kind_parent(int k) { return k <= kO ? "self_attn" : "mlp"; }

// -1 when the name is not one of the seven.
inline int linear_kind_from_name(const std::string& name) {
  for (int k = 0; k < kNumLinear; k++)
    if (name == linear_kind_name(k)) return k;
  return -1;
}

}  // namespace dpo
