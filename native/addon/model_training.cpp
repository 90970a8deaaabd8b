// Model: training calls (LoRA attach/tensors, DPO accumulate, optimizer steps, SFT, saving weights); the slow ones run
// off the JS thread through run_async (workers.h).
#include <cmath>

#include "cancel_token.h"
#include "enum_names.h"
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
  engine_call(env, [&] { m->attach_lora(lo); });
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
    o.Set("data", to_typed_array(env, ts[i].data));
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
  engine_call(env, [&] { m->set_lora_tensors(ts); });
  return env.Undefined();
}

namespace {

// A JS array of {chosen, rejected, refChosen, refRejected}; errors name the pair after `what` ("pair 3",
// "micro-batch 1 pair 0").
std::vector<dpo::DpoPair> to_dpo_pairs(Napi::Env env, const Napi::Array& a, const std::string& what) {
  std::vector<dpo::DpoPair> pairs(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string pair = what + "pair " + std::to_string(i);
    if (!a.Get(i).IsObject()) throw bad_input(env, pair + " is not an object");
    Napi::Object o = a.Get(i).As<Napi::Object>();
    pairs[i].chosen = to_scored_sequence(env, o.Get("chosen"), pair + " chosen");
    pairs[i].rejected = to_scored_sequence(env, o.Get("rejected"), pair + " rejected");
    pairs[i].ref_chosen = number_field(env, o, "refChosen", NAN);
    pairs[i].ref_rejected = number_field(env, o, "refRejected", NAN);
    if (std::isnan(pairs[i].ref_chosen) || std::isnan(pairs[i].ref_rejected))
      throw bad_input(env, pair + " needs refChosen and refRejected");
  }
  return pairs;
}

dpo::DpoOptions dpo_options(Napi::Env env, const Napi::Object& o) {
  dpo::DpoOptions opt;
  opt.beta = float(number_field(env, o, "beta", opt.beta));
  opt.label_smoothing = float(number_field(env, o, "labelSmoothing", opt.label_smoothing));
  opt.grad_scale = float(number_field(env, o, "gradScale", opt.grad_scale));
  opt.loss = enum_field(env, o, "lossType", dpo_losses(), dpo::DpoLoss::Sigmoid, "lossType");
  return opt;
}

Napi::Array dpo_group_metrics_to_js(Napi::Env env, const std::vector<std::vector<dpo::DpoPairMetrics>>& groups) {
  Napi::Array arr = Napi::Array::New(env, groups.size());
  for (size_t i = 0; i < groups.size(); i++) arr.Set(uint32_t(i), dpo_metrics_to_js(env, groups[i]));
  return arr;
}

}  // namespace

Napi::Value ModelWrap::DpoAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsObject())
    throw bad_input(env, "dpoAccumulate(pairs, padId, options) needs pairs, a pad id and options");
  std::vector<dpo::DpoPair> pairs = to_dpo_pairs(env, info[0].As<Napi::Array>(), "");
  const dpo::DpoOptions opt = dpo_options(env, info[2].As<Napi::Object>());
  const int32_t pad = info[1].As<Napi::Number>().Int32Value();
  return run_async(
      env,
      [m, pairs = std::move(pairs), pad, opt, cancel = cancel_arg(info, 3)] {
        return m->dpo_accumulate(pairs, pad, opt, cancel.get());
      },
      dpo_metrics_to_js);
}

Napi::Value ModelWrap::DpoAccumulateGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsObject())
    throw bad_input(env, "dpoAccumulateGroup(microBatches, padId, options) needs micro-batches, a pad id and options");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<std::vector<dpo::DpoPair>> micro(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string mb = "micro-batch " + std::to_string(i);
    if (!a.Get(i).IsArray()) throw bad_input(env, mb + " is not an array of pairs");
    micro[i] = to_dpo_pairs(env, a.Get(i).As<Napi::Array>(), mb + " ");
  }
  const dpo::DpoOptions opt = dpo_options(env, info[2].As<Napi::Object>());
  const int32_t pad = info[1].As<Napi::Number>().Int32Value();
  return run_async(
      env,
      [m, micro = std::move(micro), pad, opt, cancel = cancel_arg(info, 3)] {
        return m->dpo_accumulate_group(micro, pad, opt, cancel.get());
      },
      dpo_group_metrics_to_js);
}

namespace {

dpo::OptimizerOptions optimizer_options(Napi::Env env, const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw bad_input(env, "the optimizer step needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  dpo::OptimizerOptions opt;
  opt.eight_bit = enum_field(env, o, "kind", step_optimizers(), dpo::TrainingState::Optimizer::AdamW8bit,
                             "optimizer kind") == dpo::TrainingState::Optimizer::AdamW8bit;
  opt.lr = float(number_field(env, o, "lr", opt.lr));
  opt.beta1 = float(number_field(env, o, "beta1", opt.beta1));
  opt.beta2 = float(number_field(env, o, "beta2", opt.beta2));
  opt.eps = float(number_field(env, o, "eps", opt.eps));
  opt.weight_decay = float(number_field(env, o, "weightDecay", opt.weight_decay));
  opt.max_grad_norm = float(number_field(env, o, "maxGradNorm", opt.max_grad_norm));
  return opt;
}

Napi::Object grad_norm_to_js(Napi::Env env, const double& norm) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("gradNorm", norm);
  return o;
}

Napi::Object sft_loss_to_js(Napi::Env env, const std::pair<double, int>& loss_tokens) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", loss_tokens.first);
  o.Set("tokens", loss_tokens.second);
  return o;
}

}  // namespace

// One optimizer update of the LoRA adapter (DPO).
Napi::Value ModelWrap::OptimizerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return run_async(
      env, [m = live(env), opt = optimizer_options(env, info)] { return m->optimizer_step(opt); }, grad_norm_to_js);
}

// One optimizer update of every weight (SFT).
Napi::Value ModelWrap::SftStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return run_async(
      env, [m = live(env), opt = optimizer_options(env, info)] { return m->sft_step(opt); }, grad_norm_to_js);
}

Napi::Value ModelWrap::SftAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber())
    throw bad_input(env, "sftAccumulate(sequences, padId, gradScale) needs sequences, a pad id and a scale");
  const int32_t pad = info[1].As<Napi::Number>().Int32Value();
  const float scale = float(info[2].As<Napi::Number>().DoubleValue());
  return run_async(
      env,
      [m, batch = to_scored_sequences(env, info[0], "sequence"), pad, scale, cancel = cancel_arg(info, 3)] {
        return m->sft_accumulate(batch, pad, scale, cancel.get());
      },
      sft_loss_to_js);
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
  engine_call(env, [&] { m->save_weights(info[0].As<Napi::String>(), bf16); });
  return env.Undefined();
}
}  // namespace dpo_addon
