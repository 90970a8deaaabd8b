// The enum tables of enum_names.h. Where the engine already names a value (the optimizer layouts, which checkpoint
// files also carry), the table takes the engine's name instead of spelling it again.
#include "enum_names.h"

#include <iterator>

namespace dpo_addon {

namespace {

template <typename E, size_t N>
EnumTable<E> table_of(const EnumName<E> (&entries)[N]) {
  return {entries, N};
}

const EnumName<dpo::QuantMode> kQuantModes[] = {{dpo::QuantMode::Nf4, "nf4"}, {dpo::QuantMode::None, "none"}};

const EnumName<dpo::BackendChoice> kBackendChoices[] = {
    {dpo::BackendChoice::Auto, "auto"}, {dpo::BackendChoice::Cpu, "cpu"}, {dpo::BackendChoice::Cuda, "cuda"}};

const EnumName<dpo::DpoLoss> kDpoLosses[] = {{dpo::DpoLoss::Sigmoid, "sigmoid"},
                                             {dpo::DpoLoss::Ipo, "ipo"},
                                             {dpo::DpoLoss::Hinge, "hinge"},
                                             {dpo::DpoLoss::Robust, "robust"}};

// "none" first, so that step_optimizers() is this table without its first entry.
const EnumName<dpo::TrainingState::Optimizer> kOptimizers[] = {
    {dpo::TrainingState::Optimizer::None, "none"},
    {dpo::TrainingState::Optimizer::AdamW, "adamw"},
    {dpo::TrainingState::Optimizer::AdamW8bit, "paged_adamw_8bit"}};

const EnumName<dpo::OptimizerLayout> kLayouts[] = {
    {dpo::OptimizerLayout::AdamW, dpo::optimizer_layout_name(dpo::OptimizerLayout::AdamW)},
    {dpo::OptimizerLayout::Bnb8Blockwise, dpo::optimizer_layout_name(dpo::OptimizerLayout::Bnb8Blockwise)},
    {dpo::OptimizerLayout::Bnb32, dpo::optimizer_layout_name(dpo::OptimizerLayout::Bnb32)}};

const EnumName<GgmlKind> kGgmlKinds[] = {{GgmlKind::F16, "f16"}, {GgmlKind::Q8_0, "q8_0"}, {GgmlKind::Q4_0, "q4_0"}};

}  // namespace

EnumTable<dpo::QuantMode> quant_modes() { return table_of(kQuantModes); }
EnumTable<dpo::BackendChoice> backend_choices() { return table_of(kBackendChoices); }
EnumTable<dpo::DpoLoss> dpo_losses() { return table_of(kDpoLosses); }
EnumTable<dpo::TrainingState::Optimizer> training_optimizers() { return table_of(kOptimizers); }
EnumTable<dpo::TrainingState::Optimizer> step_optimizers() { return {kOptimizers + 1, std::size(kOptimizers) - 1}; }
EnumTable<dpo::OptimizerLayout> optimizer_layouts() { return table_of(kLayouts); }
EnumTable<GgmlKind> ggml_kinds() { return table_of(kGgmlKinds); }

}  // namespace dpo_addon
