// The N-API module: version(), probe(), loadModel() -> Model { info, logps, generate, dispose }, CancelToken.
// A thin shell over include/dpo/engine.h; the TypeScript declaration is src-main/engine/nativeTypes.ts.
#include <napi.h>

#include <cmath>
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
                                    InstanceMethod("attachLora", &ModelWrap::AttachLora),
                                    InstanceMethod("detachLora", &ModelWrap::DetachLora),
                                    InstanceMethod("hasLora", &ModelWrap::HasLora),
                                    InstanceMethod("loraTensors", &ModelWrap::LoraTensors),
                                    InstanceMethod("setLoraTensors", &ModelWrap::SetLoraTensors),
                                    InstanceMethod("dpoAccumulate", &ModelWrap::DpoAccumulate),
                                    InstanceMethod("optimizerStep", &ModelWrap::OptimizerStep),
                                    InstanceMethod("sftAccumulate", &ModelWrap::SftAccumulate),
                                    InstanceMethod("sftStep", &ModelWrap::SftStep),
                                    InstanceMethod("saveWeights", &ModelWrap::SaveWeights),
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
  Napi::Value HasLora(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), live(info.Env())->has_lora()); }
  Napi::Value LoraTensors(const Napi::CallbackInfo& info);
  Napi::Value SetLoraTensors(const Napi::CallbackInfo& info);
  Napi::Value DpoAccumulate(const Napi::CallbackInfo& info);
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
  Napi::Value SftAccumulate(const Napi::CallbackInfo& info);
  Napi::Value SftStep(const Napi::CallbackInfo& info);
  Napi::Value SaveWeights(const Napi::CallbackInfo& info);
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
              CancelFlag cancel, bool use_adapter)
      : PromiseWorker(env), model_(std::move(m)), batch_(std::move(batch)), pad_(pad), cancel_(std::move(cancel)),
        use_adapter_(use_adapter) {}
  void Execute() override { guarded([&] { out_ = model_->logps(batch_, pad_, cancel_.get(), use_adapter_); }); }
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
  bool use_adapter_;
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
  const bool use_adapter = !(info.Length() > 3 && info[3].IsBoolean() && !info[3].As<Napi::Boolean>().Value());
  auto* w = new LogpsWorker(env, m, std::move(batch), info[1].As<Napi::Number>().Int32Value(),
                            info.Length() > 2 ? cancel_flag_of(info[2]) : nullptr, use_adapter);
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


// --- training calls
Napi::Value ModelWrap::AttachLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw bad_input(env, "attachLora(options) needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  dpo::LoraOptions lo;
  if (o.Has("targets")) {
    Napi::Value t = o.Get("targets");
    if (!t.IsArray()) throw bad_input(env, "attachLora: targets must be an array of module names");
    Napi::Array a = t.As<Napi::Array>();
    lo.targets.clear();
    for (uint32_t i = 0; i < a.Length(); i++) lo.targets.push_back(a.Get(i).ToString());
  }
  lo.r = number_field(env, o, "r", lo.r);
  lo.alpha = float(number_field(env, o, "alpha", lo.alpha));
  lo.dropout = float(number_field(env, o, "dropout", lo.dropout));
  lo.seed = uint64_t(number_field(env, o, "seed", double(lo.seed)));
  try {
    m->attach_lora(lo);
  } catch (const dpo::EngineError& e) {
    throw to_js_error(env, e);
  }
  return env.Undefined();
}

Napi::Value ModelWrap::LoraTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<dpo::LoraTensor> ts = live(env)->lora_tensors();
  Napi::Array arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", ts[i].name);
    Napi::Array shape = Napi::Array::New(env, ts[i].shape.size());
    for (size_t j = 0; j < ts[i].shape.size(); j++) shape.Set(uint32_t(j), double(ts[i].shape[j]));
    o.Set("shape", shape);
    Napi::Float32Array data = Napi::Float32Array::New(env, ts[i].data.size());
    std::copy(ts[i].data.begin(), ts[i].data.end(), data.Data());
    o.Set("data", data);
    arr.Set(uint32_t(i), o);
  }
  return arr;
}

Napi::Value ModelWrap::SetLoraTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsArray()) throw bad_input(env, "setLoraTensors(tensors) needs an array");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<dpo::LoraTensor> ts(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    if (!a.Get(i).IsObject()) throw bad_input(env, "tensor " + std::to_string(i) + " is not an object");
    Napi::Object o = a.Get(i).As<Napi::Object>();
    ts[i].name = o.Get("name").ToString();
    Napi::Value shape = o.Get("shape"), data = o.Get("data");
    if (!shape.IsArray()) throw bad_input(env, "tensor " + ts[i].name + ": shape must be an array");
    Napi::Array sa = shape.As<Napi::Array>();
    for (uint32_t j = 0; j < sa.Length(); j++) ts[i].shape.push_back(int64_t(sa.Get(j).ToNumber().DoubleValue()));
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw bad_input(env, "tensor " + ts[i].name + ": data must be a Float32Array");
    Napi::Float32Array fa = data.As<Napi::Float32Array>();
    ts[i].data.assign(fa.Data(), fa.Data() + fa.ElementLength());
  }
  try {
    m->set_lora_tensors(ts);
  } catch (const dpo::EngineError& e) {
    throw to_js_error(env, e);
  }
  return env.Undefined();
}

class DpoWorker : public PromiseWorker<Napi::AsyncWorker> {
 public:
  DpoWorker(Napi::Env env, std::shared_ptr<dpo::Model> m, std::vector<dpo::DpoPair> pairs, int32_t pad,
            dpo::DpoOptions opt, CancelFlag cancel)
      : PromiseWorker(env), model_(std::move(m)), pairs_(std::move(pairs)), pad_(pad), opt_(opt),
        cancel_(std::move(cancel)) {}
  void Execute() override { guarded([&] { out_ = model_->dpo_accumulate(pairs_, pad_, opt_, cancel_.get()); }); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array arr = Napi::Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); i++) {
      const dpo::DpoPairMetrics& r = out_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("loss", r.loss);
      o.Set("chosenLogp", r.chosen_logp);
      o.Set("rejectedLogp", r.rejected_logp);
      o.Set("chosenLogitsMean", r.chosen_logits_mean);
      o.Set("rejectedLogitsMean", r.rejected_logits_mean);
      o.Set("chosenReward", r.chosen_reward);
      o.Set("rejectedReward", r.rejected_reward);
      arr.Set(uint32_t(i), o);
    }
    deferred_.Resolve(arr);
  }

 private:
  std::shared_ptr<dpo::Model> model_;
  std::vector<dpo::DpoPair> pairs_;
  int32_t pad_;
  dpo::DpoOptions opt_;
  CancelFlag cancel_;
  std::vector<dpo::DpoPairMetrics> out_;
};

Napi::Value ModelWrap::DpoAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsObject())
    throw bad_input(env, "dpoAccumulate(pairs, padId, options) needs pairs, a pad id and options");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<dpo::DpoPair> pairs(a.Length());
  auto seq = [&](Napi::Object o, const std::string& what) {
    dpo::ScoredSequence s;
    if (!o.Get(what).IsObject()) throw bad_input(env, what + " must be an object with ids and labels");
    Napi::Object so = o.Get(what).As<Napi::Object>();
    s.ids = to_int_vector(env, so.Get("ids"), what + ".ids");
    s.labels = to_int_vector(env, so.Get("labels"), what + ".labels");
    return s;
  };
  for (uint32_t i = 0; i < a.Length(); i++) {
    if (!a.Get(i).IsObject()) throw bad_input(env, "pair " + std::to_string(i) + " is not an object");
    Napi::Object o = a.Get(i).As<Napi::Object>();
    pairs[i].chosen = seq(o, "chosen");
    pairs[i].rejected = seq(o, "rejected");
    pairs[i].ref_chosen = number_field(env, o, "refChosen", NAN);
    pairs[i].ref_rejected = number_field(env, o, "refRejected", NAN);
    if (std::isnan(pairs[i].ref_chosen) || std::isnan(pairs[i].ref_rejected))
      throw bad_input(env, "pair " + std::to_string(i) + " needs refChosen and refRejected");
  }
  Napi::Object o = info[2].As<Napi::Object>();
  dpo::DpoOptions opt;
  opt.beta = float(number_field(env, o, "beta", opt.beta));
  opt.label_smoothing = float(number_field(env, o, "labelSmoothing", opt.label_smoothing));
  opt.grad_scale = float(number_field(env, o, "gradScale", opt.grad_scale));
  std::string loss = o.Has("lossType") ? std::string(o.Get("lossType").ToString()) : "sigmoid";
  if (loss == "sigmoid") opt.loss = dpo::DpoLoss::Sigmoid;
  else if (loss == "ipo") opt.loss = dpo::DpoLoss::Ipo;
  else if (loss == "hinge") opt.loss = dpo::DpoLoss::Hinge;
  else if (loss == "robust") opt.loss = dpo::DpoLoss::Robust;
  else throw bad_input(env, "lossType must be sigmoid, ipo, hinge or robust, got '" + loss + "'");
  auto* w = new DpoWorker(env, m, std::move(pairs), info[1].As<Napi::Number>().Int32Value(), opt,
                          info.Length() > 3 ? cancel_flag_of(info[3]) : nullptr);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// One optimizer update: of the LoRA adapter (DPO) or of every weight (SFT).
class StepWorker : public PromiseWorker<Napi::AsyncWorker> {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<dpo::Model> m, dpo::OptimizerOptions opt, bool full)
      : PromiseWorker(env), model_(std::move(m)), opt_(opt), full_(full) {}
  void Execute() override {
    guarded([&] { norm_ = full_ ? model_->sft_step(opt_) : model_->optimizer_step(opt_); });
  }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("gradNorm", norm_);
    deferred_.Resolve(o);
  }

 private:
  std::shared_ptr<dpo::Model> model_;
  dpo::OptimizerOptions opt_;
  bool full_;
  double norm_ = 0;
};

dpo::OptimizerOptions optimizer_options(Napi::Env env, const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw bad_input(env, "the optimizer step needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  dpo::OptimizerOptions opt;
  std::string kind = o.Has("kind") ? std::string(o.Get("kind").ToString()) : "paged_adamw_8bit";
  if (kind != "adamw" && kind != "paged_adamw_8bit")
    throw bad_input(env, "optimizer kind must be adamw or paged_adamw_8bit, got '" + kind + "'");
  opt.eight_bit = kind == "paged_adamw_8bit";
  opt.lr = float(number_field(env, o, "lr", opt.lr));
  opt.beta1 = float(number_field(env, o, "beta1", opt.beta1));
  opt.beta2 = float(number_field(env, o, "beta2", opt.beta2));
  opt.eps = float(number_field(env, o, "eps", opt.eps));
  opt.weight_decay = float(number_field(env, o, "weightDecay", opt.weight_decay));
  opt.max_grad_norm = float(number_field(env, o, "maxGradNorm", opt.max_grad_norm));
  return opt;
}

Napi::Value ModelWrap::OptimizerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* w = new StepWorker(env, live(env), optimizer_options(env, info), false);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value ModelWrap::SftStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* w = new StepWorker(env, live(env), optimizer_options(env, info), true);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

class SftWorker : public PromiseWorker<Napi::AsyncWorker> {
 public:
  SftWorker(Napi::Env env, std::shared_ptr<dpo::Model> m, std::vector<dpo::ScoredSequence> batch, int32_t pad,
            float scale, CancelFlag cancel)
      : PromiseWorker(env), model_(std::move(m)), batch_(std::move(batch)), pad_(pad), scale_(scale),
        cancel_(std::move(cancel)) {}
  void Execute() override { guarded([&] { out_ = model_->sft_accumulate(batch_, pad_, scale_, cancel_.get()); }); }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("loss", out_.first);
    o.Set("tokens", out_.second);
    deferred_.Resolve(o);
  }

 private:
  std::shared_ptr<dpo::Model> model_;
  std::vector<dpo::ScoredSequence> batch_;
  int32_t pad_;
  float scale_;
  CancelFlag cancel_;
  std::pair<double, int> out_;
};

Napi::Value ModelWrap::SftAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber())
    throw bad_input(env, "sftAccumulate(sequences, padId, gradScale) needs sequences, a pad id and a scale");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<dpo::ScoredSequence> batch(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    if (!a.Get(i).IsObject()) throw bad_input(env, "sequence " + std::to_string(i) + " is not an object");
    Napi::Object o = a.Get(i).As<Napi::Object>();
    batch[i].ids = to_int_vector(env, o.Get("ids"), "sequence " + std::to_string(i) + ".ids");
    batch[i].labels = to_int_vector(env, o.Get("labels"), "sequence " + std::to_string(i) + ".labels");
  }
  auto* w = new SftWorker(env, m, std::move(batch), info[1].As<Napi::Number>().Int32Value(),
                          float(info[2].As<Napi::Number>().DoubleValue()),
                          info.Length() > 3 ? cancel_flag_of(info[3]) : nullptr);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value ModelWrap::SaveWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsString()) throw bad_input(env, "saveWeights(path, {bf16}) needs a file path");
  bool bf16 = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value b = info[1].As<Napi::Object>().Get("bf16");
    bf16 = b.IsBoolean() && b.As<Napi::Boolean>().Value();
  }
  try {
    m->save_weights(info[0].As<Napi::String>(), bf16);
  } catch (const dpo::EngineError& e) {
    throw to_js_error(env, e);
  }
  return env.Undefined();
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
