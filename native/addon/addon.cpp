// The N-API module: version(), probe(), loadModel() -> Model { info, logps, generate, dispose }, CancelToken.
// A thin shell over include/dpo/engine.h; the TypeScript declaration is src-main/engine/nativeTypes.ts.
#include <napi.h>

#include <memory>

#include "convert.h"
#include "workers.h"

namespace dpo_addon {
namespace {

// --- CancelToken: a flag shared with running workers.
class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CancelToken",
                       {InstanceMethod("cancel", &CancelToken::Cancel),
                        InstanceAccessor("cancelled", &CancelToken::Cancelled, nullptr)});
  }
  explicit CancelToken(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<CancelToken>(info), flag_(std::make_shared<std::atomic<bool>>(false)) {}
  CancelFlag flag() const { return flag_; }

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    flag_->store(true);
    return info.Env().Undefined();
  }
  Napi::Value Cancelled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag_->load()); }
  CancelFlag flag_;
};

CancelFlag cancel_flag_of(const Napi::Value& v) {
  if (v.IsObject()) {
    Napi::Object o = v.As<Napi::Object>();
    if (o.InstanceOf(o.Env().GetInstanceData<Napi::FunctionReference>()->Value())) {
      return CancelToken::Unwrap(o)->flag();
    }
  }
  return nullptr;
}

// --- Model
class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::FunctionReference* constructor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Model",
                                   {InstanceMethod("info", &ModelWrap::Info),
                                    InstanceMethod("logps", &ModelWrap::Logps),
                                    InstanceMethod("generate", &ModelWrap::Generate),
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
};
Napi::FunctionReference* ModelWrap::constructor = nullptr;

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
    if (o.Has("quant")) {
      std::string q = o.Get("quant").ToString();
      if (q == "nf4") opt.quant = dpo::QuantMode::Nf4;
      else if (q == "none") opt.quant = dpo::QuantMode::None;
      else throw bad_input(env, "quant must be 'nf4' or 'none', got '" + q + "'");
    }
    if (o.Has("backend")) {
      std::string b = o.Get("backend").ToString();
      if (b == "auto") opt.backend = dpo::BackendChoice::Auto;
      else if (b == "cpu") opt.backend = dpo::BackendChoice::Cpu;
      else if (b == "cuda") opt.backend = dpo::BackendChoice::Cuda;
      else throw bad_input(env, "backend must be 'auto', 'cpu' or 'cuda', got '" + b + "'");
    }
  }
  Napi::Function cb = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  auto* w = new LoadWorker(env, info[0].As<Napi::String>(), opt, cb);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// --- model.logps([{ids, labels}], padId, cancel?)
class LogpsWorker : public PromiseWorker<Napi::AsyncWorker> {
 public:
  LogpsWorker(Napi::Env env, std::shared_ptr<dpo::Model> m, std::vector<dpo::ScoredSequence> batch, int32_t pad,
              CancelFlag cancel)
      : PromiseWorker(env), model_(std::move(m)), batch_(std::move(batch)), pad_(pad), cancel_(std::move(cancel)) {}
  void Execute() override { guarded([&] { out_ = model_->logps(batch_, pad_, cancel_.get()); }); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array arr = Napi::Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("logp", out_[i].logp);
      o.Set("tokens", out_[i].tokens);
      o.Set("logitsMean", out_[i].logits_mean);
      arr.Set(uint32_t(i), o);
    }
    deferred_.Resolve(arr);
  }

 private:
  std::shared_ptr<dpo::Model> model_;
  std::vector<dpo::ScoredSequence> batch_;
  int32_t pad_;
  CancelFlag cancel_;
  std::vector<dpo::SequenceLogp> out_;
};

Napi::Value ModelWrap::Logps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber())
    throw bad_input(env, "logps(sequences, padId) needs an array of {ids, labels} and a pad id");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<dpo::ScoredSequence> batch(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsObject()) throw bad_input(env, "sequence " + std::to_string(i) + " is not an object");
    Napi::Object o = v.As<Napi::Object>();
    batch[i].ids = to_int_vector(env, o.Get("ids"), "sequence " + std::to_string(i) + ".ids");
    batch[i].labels = to_int_vector(env, o.Get("labels"), "sequence " + std::to_string(i) + ".labels");
  }
  auto* w = new LogpsWorker(env, m, std::move(batch), info[1].As<Napi::Number>().Int32Value(),
                            info.Length() > 2 ? cancel_flag_of(info[2]) : nullptr);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// --- model.generate(prompts, {maxNewTokens, eosIds}, onToken?, cancel?)
struct TokenEvent {
  int32_t sequence, token;
};

class GenerateWorker : public PromiseWorker<Napi::AsyncProgressQueueWorker<TokenEvent>> {
 public:
  GenerateWorker(Napi::Env env, std::shared_ptr<dpo::Model> m, std::vector<std::vector<int32_t>> prompts,
                 dpo::GenerateOptions opt, Napi::Function on_token, CancelFlag cancel)
      : PromiseWorker(env), model_(std::move(m)), prompts_(std::move(prompts)), opt_(std::move(opt)),
        cancel_(std::move(cancel)) {
    if (!on_token.IsEmpty()) token_cb_ = Napi::Persistent(on_token);
  }
  void Execute(const ExecutionProgress& progress) override {
    const bool stream = !token_cb_.IsEmpty();
    guarded([&] {
      out_ = model_->generate(prompts_, opt_, [&](int s, int32_t t) {
        if (!stream) return;
        TokenEvent e{s, t};
        progress.Send(&e, 1);
      }, cancel_.get());
    });
  }
  void OnProgress(const TokenEvent* data, size_t count) override {
    for (size_t i = 0; i < count; i++)
      token_cb_.Call({Napi::Number::New(Env(), data[i].sequence), Napi::Number::New(Env(), data[i].token)});
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array tokens = Napi::Array::New(env, out_.tokens.size());
    Napi::Array finish = Napi::Array::New(env, out_.finish.size());
    for (size_t i = 0; i < out_.tokens.size(); i++) {
      Napi::Int32Array t = Napi::Int32Array::New(env, out_.tokens[i].size());
      std::copy(out_.tokens[i].begin(), out_.tokens[i].end(), t.Data());
      tokens.Set(uint32_t(i), t);
      finish.Set(uint32_t(i), out_.finish[i]);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("tokens", tokens);
    o.Set("finish", finish);
    deferred_.Resolve(o);
  }

 private:
  std::shared_ptr<dpo::Model> model_;
  std::vector<std::vector<int32_t>> prompts_;
  dpo::GenerateOptions opt_;
  CancelFlag cancel_;
  Napi::FunctionReference token_cb_;
  dpo::GenerateResult out_;
};

Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 2 || !info[1].IsObject()) throw bad_input(env, "generate(prompts, options) needs options");
  dpo::GenerateOptions opt;
  Napi::Object o = info[1].As<Napi::Object>();
  if (o.Has("maxNewTokens")) {
    Napi::Value v = o.Get("maxNewTokens");
    if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 0)
      throw bad_input(env, "maxNewTokens must be a non-negative integer");
    opt.max_new_tokens = v.As<Napi::Number>().Int32Value();
  }
  if (o.Has("eosIds")) opt.eos_ids = to_int_vector(env, o.Get("eosIds"), "eosIds");
  Napi::Function cb = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  auto* w = new GenerateWorker(env, m, to_int_vectors(env, info[0], "prompts"), opt, cb,
                               info.Length() > 3 ? cancel_flag_of(info[3]) : nullptr);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
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
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  return exports;
}

}  // namespace
}  // namespace dpo_addon

// NODE_API_MODULE pastes the function name into an identifier, so it needs an unqualified one.
static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return dpo_addon::Init(env, exports); }
NODE_API_MODULE(dpo_engine, InitModule)
