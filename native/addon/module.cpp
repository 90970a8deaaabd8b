// The N-API module: version(), probe(), checkModel(), loadModel() -> Model, CancelToken, exportOps. A thin shell over
// include/dpo/engine.h; the TypeScript declaration of all of it is src-main/engine/nativeTypes.ts.
#include <napi.h>

#include "cancel_token.h"
#include "convert.h"
#include "enum_names.h"
#include "export_ops.h"
#include "model_wrap.h"
#include "workers.h"

namespace dpo_addon {
namespace {

// --- loadModel(dir, {quant, backend}, onProgress?)
class LoadWorker : public PromiseWorker<Napi::AsyncProgressQueueWorker<double>> {
 public:
  LoadWorker(Napi::Env env, std::string dir, dpo::LoadOptions opt, Napi::Function on_progress)
      : PromiseWorker(env), dir_(std::move(dir)), opt_(opt) {
    if (!on_progress.IsEmpty()) progress_cb_ = Napi::Persistent(on_progress);
  }
  void Execute(const ExecutionProgress& progress) override {
    guarded([&] { model_ = dpo::Model::load(dir_, opt_, [&](double f) { progress.Send(&f, 1); }); });
  }
  void OnProgress(const double* data, size_t count) override {
    if (!progress_cb_.IsEmpty() && count > 0) progress_cb_.Call({Napi::Number::New(Env(), data[count - 1])});
  }
  void OnOK() override {
    Napi::Object obj = ModelWrap::constructor->New({});
    ModelWrap::Unwrap(obj)->model = std::move(model_);
    deferred_.Resolve(obj);
  }

 private:
  std::string dir_;
  dpo::LoadOptions opt_;
  Napi::FunctionReference progress_cb_;
  std::shared_ptr<dpo::Model> model_;
};

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw bad_input(env, "loadModel(dir, options) needs a directory");
  dpo::LoadOptions opt;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    opt.quant = enum_field(env, o, "quant", quant_modes(), opt.quant, "quant");
    opt.backend = enum_field(env, o, "backend", backend_choices(), opt.backend, "backend");
  }
  Napi::Function cb = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  return queue_worker<LoadWorker>(env, std::string(info[0].As<Napi::String>()), opt, cb);
}

// checkModel(dir, {quant}): the loader's validation from config.json and the safetensors headers (no tensor data is
// read, so it runs on the calling thread).
Napi::Value CheckModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw bad_input(env, "checkModel(dir, options) needs a directory");
  dpo::QuantMode quant = dpo::QuantMode::Nf4;
  if (info.Length() > 1 && info[1].IsObject())
    quant = enum_field(env, info[1].As<Napi::Object>(), "quant", quant_modes(), quant, "quant");
  return model_check_to_js(env, dpo::check_model(info[0].As<Napi::String>(), quant));
}

Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dpo::engine_version()); }
Napi::Value Probe(const Napi::CallbackInfo& info) { return backend_info_to_js(info.Env(), dpo::probe_backends()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cancel_ctor = CancelToken::Init(env);
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(cancel_ctor)));
  exports.Set("CancelToken", cancel_ctor);
  exports.Set("Model", ModelWrap::Init(env));
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("checkModel", Napi::Function::New(env, CheckModel));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("exportOps", ExportOpsInit(env));
  return exports;
}

}  // namespace
}  // namespace dpo_addon

// NODE_API_MODULE pastes the function name into an identifier, so it needs an unqualified one.
static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return dpo_addon::Init(env, exports); }
NODE_API_MODULE(dpo_engine, InitModule)