// Model: exportTrainingState / importTrainingState, the engine half of resume (dpo/training_state.h,
// docs/resume.md): optimizer state per parameter as typed arrays, the step counters, the dropout generator.
#include "enum_names.h"
#include "model_wrap.h"

namespace dpo_addon {

namespace {

// o[key] as a typed array of `type`, copied; empty when absent.
template <typename T>
std::vector<T> typed_field(Napi::Env env, const Napi::Object& o, const char* key, napi_typedarray_type type,
                           const std::string& tensor) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return {};
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw bad_input(env, "optimizer state of " + tensor + ": " + key + " must be a " +
                             (type == napi_float32_array ? "Float32Array" : "Uint8Array"));
  Napi::TypedArrayOf<T> a = v.As<Napi::TypedArrayOf<T>>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

int64_t integer_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& tensor) {
  const double d = number_field(env, o, key, -1);
  if (d < 0 || d != double(int64_t(d)))
    throw bad_input(env, "optimizer state of " + tensor + ": " + key + " must be a non-negative integer");
  return int64_t(d);
}

}  // namespace

Napi::Value ModelWrap::ExportTrainingState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dpo::TrainingState st = engine_call(env, [&] { return live(env)->export_training_state(); });
  Napi::Object out = Napi::Object::New(env);
  out.Set("optimizer", enum_name(training_optimizers(), st.optimizer));
  out.Set("dropoutRng", st.dropout_rng);
  Napi::Array tensors = Napi::Array::New(env, st.tensors.size());
  for (size_t i = 0; i < st.tensors.size(); i++) {
    const dpo::OptimizerTensorState& t = st.tensors[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name);
    o.Set("layout", enum_name(optimizer_layouts(), t.layout));
    o.Set("step", double(t.step));
    o.Set("numel", double(t.numel));
    if (t.layout == dpo::OptimizerLayout::Bnb8Blockwise) {
      o.Set("state1", to_typed_array(env, t.state1));
      o.Set("state2", to_typed_array(env, t.state2));
      o.Set("absmax1", to_typed_array(env, t.absmax1));
      o.Set("absmax2", to_typed_array(env, t.absmax2));
    } else {
      o.Set("m", to_typed_array(env, t.m));
      o.Set("v", to_typed_array(env, t.v));
    }
    tensors.Set(uint32_t(i), o);
  }
  out.Set("tensors", tensors);
  return out;
}

Napi::Value ModelWrap::ImportTrainingState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw bad_input(env, "importTrainingState(state) needs a state object");
  Napi::Object o = info[0].As<Napi::Object>();
  dpo::TrainingState st;
  st.optimizer = parse_enum(env, training_optimizers(), "importTrainingState: optimizer",
                            o.Has("optimizer") ? std::string(o.Get("optimizer").ToString()) : "");
  if (!o.Get("dropoutRng").IsString()) throw bad_input(env, "importTrainingState: dropoutRng must be a string");
  st.dropout_rng = o.Get("dropoutRng").As<Napi::String>();
  Napi::Value tv = o.Get("tensors");
  if (!tv.IsArray()) throw bad_input(env, "importTrainingState: tensors must be an array");
  Napi::Array ta = tv.As<Napi::Array>();
  st.tensors.resize(ta.Length());
  for (uint32_t i = 0; i < ta.Length(); i++) {
    if (!ta.Get(i).IsObject()) throw bad_input(env, "optimizer state " + std::to_string(i) + " is not an object");
    Napi::Object t = ta.Get(i).As<Napi::Object>();
    dpo::OptimizerTensorState& s = st.tensors[i];
    s.name = t.Get("name").ToString();
    s.layout =
        parse_enum(env, optimizer_layouts(), "optimizer state of " + s.name + ": layout", t.Get("layout").ToString());
    s.step = integer_field(env, t, "step", s.name);
    s.numel = integer_field(env, t, "numel", s.name);
    s.m = typed_field<float>(env, t, "m", napi_float32_array, s.name);
    s.v = typed_field<float>(env, t, "v", napi_float32_array, s.name);
    s.state1 = typed_field<uint8_t>(env, t, "state1", napi_uint8_array, s.name);
    s.state2 = typed_field<uint8_t>(env, t, "state2", napi_uint8_array, s.name);
    s.absmax1 = typed_field<float>(env, t, "absmax1", napi_float32_array, s.name);
    s.absmax2 = typed_field<float>(env, t, "absmax2", napi_float32_array, s.name);
  }
  engine_call(env, [&] { m->import_training_state(st); });
  return env.Undefined();
}

}  // namespace dpo_addon
