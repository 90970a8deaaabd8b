// What a LoRA training run holds in the engine beyond the adapter's A and B, so that a run stopped after optimizer
// step k continues bit for bit: every parameter's optimizer state and step counter, and the dropout generator.
// Model::export_training_state / import_training_state move it through the backend (docs/resume.md, "engine state").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dpo {

// How one parameter's optimizer state is stored (the optimizer and the tensor size decide it).
enum class OptimizerLayout {
  AdamW,           // fp32 torch AdamW: m = exp_avg, v = exp_avg_sq
  Bnb8Blockwise,   // bnb 8-bit blockwise (n >= 4096): state1/state2 codes, absmax1/absmax2 per 2048-element block
  Bnb32,           // bnb's 32-bit path of the 8-bit optimizer (n < 4096): m = state1, v = state2 in fp32
};

// The layout's name in error messages, the addon and checkpoint files.
inline const char* optimizer_layout_name(OptimizerLayout l) {
  switch (l) {
    case OptimizerLayout::AdamW: return "adamw";
    case OptimizerLayout::Bnb8Blockwise: return "bnb8_blockwise";
    case OptimizerLayout::Bnb32: return "bnb32";
  }
  return "adamw";
}

struct OptimizerTensorState {
  std::string name;  // the parameter's PEFT name, as Model::lora_tensors() gives it
  OptimizerLayout layout = OptimizerLayout::AdamW;
  int64_t step = 0;   // updates applied so far (the bias corrections of the next update use step + 1)
  int64_t numel = 0;  // elements of the parameter
  std::vector<float> m, v;              // AdamW, Bnb32: (numel) each
  std::vector<uint8_t> state1, state2;  // Bnb8Blockwise: (numel) codes into the signed / unsigned dynamic maps
  std::vector<float> absmax1, absmax2;  // Bnb8Blockwise: (ceil(numel / 2048)) block scales
};

struct TrainingState {
  // No optimizer state yet (no step taken), or which optimizer made `tensors`.
  enum class Optimizer { None, AdamW, AdamW8bit } optimizer = Optimizer::None;
  std::vector<OptimizerTensorState> tensors;  // per adapted matrix, in lora_tensors() order (A before B)
  // The LoRA dropout generator (std::mt19937, its standard text form) as it stood after the last optimizer step:
  // draws of an unfinished step are not part of the state, so a step cancelled half-way is redone identically.
  std::string dropout_rng;
};

}  // namespace dpo
