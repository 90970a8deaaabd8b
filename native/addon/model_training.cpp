// Model: training calls (LoRA attach/tensors, DPO accumulate, optimizer steps, SFT, saving weights) and their workers.
#include <cmath>

#include "cancel_token.h"
#include "model_wrap.h"
#include "workers.h"

namespace dpo_addon {

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
    deferred_.Resolve(dpo_metrics_to_js(Env(), out_));
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
}  // namespace dpo_addon
