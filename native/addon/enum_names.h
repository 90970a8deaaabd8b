// The JS names of the engine's enums (quant mode, backend, DPO loss, optimizer, optimizer layout, GGML kind): one
// table per enum, read both ways, so a name is spelled once and a bad one gets an E_BAD_INPUT error that names the
// field and lists every allowed value. The TypeScript side of these names is src-main/engine/nativeTypes.ts.
#pragma once
#include <napi.h>

#include <cstddef>
#include <string>

#include "convert.h"
#include "dpo/training_state.h"

namespace dpo_addon {

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

// A view of one enum's table (a sub-range when a call takes only some of the values).
template <typename E>
struct EnumTable {
  const EnumName<E>* first;
  size_t size;
  const EnumName<E>* begin() const { return first; }
  const EnumName<E>* end() const { return first + size; }
};

// "'a', 'b' or 'c'" for error messages.
template <typename E>
std::string allowed_names(EnumTable<E> table) {
  std::string out;
  for (size_t i = 0; i < table.size; i++) {
    if (i > 0) out += i + 1 == table.size ? " or " : ", ";
    out += std::string("'") + table.first[i].name + "'";
  }
  return out;
}

// The value named `got`; E_BAD_INPUT "<field> must be 'a', 'b' or 'c', got '<got>'" when no entry has that name.
template <typename E>
E parse_enum(Napi::Env env, EnumTable<E> table, const std::string& field, const std::string& got) {
  for (const EnumName<E>& e : table)
    if (got == e.name) return e.value;
  throw bad_input(env, field + " must be " + allowed_names(table) + ", got '" + got + "'");
}

// o[key] parsed with `table`, `fallback` when o has no such key; `field` is how the error names it.
template <typename E>
E enum_field(Napi::Env env, const Napi::Object& o, const char* key, EnumTable<E> table, E fallback,
             const std::string& field) {
  if (!o.Has(key)) return fallback;
  return parse_enum(env, table, field, o.Get(key).ToString());
}

template <typename E>
const char* enum_name(EnumTable<E> table, E value) {
  for (const EnumName<E>& e : table)
    if (e.value == value) return e.name;
  return "?";
}

EnumTable<dpo::QuantMode> quant_modes();
EnumTable<dpo::BackendChoice> backend_choices();
EnumTable<dpo::DpoLoss> dpo_losses();
// none, adamw, paged_adamw_8bit: what a training state holds; a step takes only the two real optimizers.
EnumTable<dpo::TrainingState::Optimizer> training_optimizers();
EnumTable<dpo::TrainingState::Optimizer> step_optimizers();
EnumTable<dpo::OptimizerLayout> optimizer_layouts();

// The GGML tensor encodings exportOps.ggmlEncode writes (docs/exports.md).
enum class GgmlKind { F16, Q8_0, Q4_0 };
EnumTable<GgmlKind> ggml_kinds();

}  // namespace dpo_addon
