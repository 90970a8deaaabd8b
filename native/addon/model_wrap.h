// The JS Model class: one C++ wrapper over dpo::Model. Inference calls live in model_wrap.cpp, training calls in
// model_training.cpp and training_state.cpp; every slow call returns a promise from an AsyncWorker.
#pragma once
#include <napi.h>

#include <memory>

#include "convert.h"
#include "dpo/engine.h"

namespace dpo_addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::FunctionReference* constructor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(
        env, "Model",
        {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("logps", &ModelWrap::Logps),
         InstanceMethod("generate", &ModelWrap::Generate), InstanceMethod("attachLora", &ModelWrap::AttachLora),
         InstanceMethod("detachLora", &ModelWrap::DetachLora), InstanceMethod("hasLora", &ModelWrap::HasLora),
         InstanceMethod("loraTensors", &ModelWrap::LoraTensors),
         InstanceMethod("setLoraTensors", &ModelWrap::SetLoraTensors),
         InstanceMethod("dpoAccumulate", &ModelWrap::DpoAccumulate),
         InstanceMethod("dpoAccumulateGroup", &ModelWrap::DpoAccumulateGroup),
         InstanceMethod("optimizerStep", &ModelWrap::OptimizerStep),
         InstanceMethod("exportTrainingState", &ModelWrap::ExportTrainingState),
         InstanceMethod("importTrainingState", &ModelWrap::ImportTrainingState),
         InstanceMethod("sftAccumulate", &ModelWrap::SftAccumulate), InstanceMethod("sftStep", &ModelWrap::SftStep),
         InstanceMethod("saveWeights", &ModelWrap::SaveWeights), InstanceMethod("memoryStats", &ModelWrap::MemoryStats),
         InstanceMethod("resetPeakMemory", &ModelWrap::ResetPeakMemory),
         InstanceMethod("dispose", &ModelWrap::Dispose)});
    constructor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}
  std::shared_ptr<dpo::Model> model;

 private:
  std::shared_ptr<dpo::Model> live(Napi::Env env) {
    if (!model) throw bad_input(env, "this model was disposed");
    return model;
  }
  Napi::Value Info(const Napi::CallbackInfo& info) { return model_info_to_js(info.Env(), live(info.Env())->info()); }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model.reset();  // running workers hold their own reference; memory goes when they finish
    return info.Env().Undefined();
  }
  Napi::Value Logps(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value AttachLora(const Napi::CallbackInfo& info);
  Napi::Value DetachLora(const Napi::CallbackInfo& info) {
    live(info.Env())->detach_lora();
    return info.Env().Undefined();
  }
  Napi::Value HasLora(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), live(info.Env())->has_lora());
  }
  Napi::Value LoraTensors(const Napi::CallbackInfo& info);
  Napi::Value SetLoraTensors(const Napi::CallbackInfo& info);
  Napi::Value DpoAccumulate(const Napi::CallbackInfo& info);
  Napi::Value DpoAccumulateGroup(const Napi::CallbackInfo& info);
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
  Napi::Value ExportTrainingState(const Napi::CallbackInfo& info);  // training_state.cpp
  Napi::Value ImportTrainingState(const Napi::CallbackInfo& info);
  Napi::Value SftAccumulate(const Napi::CallbackInfo& info);
  Napi::Value SftStep(const Napi::CallbackInfo& info);
  Napi::Value SaveWeights(const Napi::CallbackInfo& info);
  Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
    const dpo::MemoryStats m = live(info.Env())->memory_stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("inUseBytes", double(m.in_use_bytes));
    o.Set("peakBytes", double(m.peak_bytes));
    return o;
  }
  Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
    live(info.Env())->reset_peak_memory();
    return info.Env().Undefined();
  }
};

}  // namespace dpo_addon
