// Conversions between JS values and engine types (the only place that knows both sides' shapes).
#include "convert.h"

#include <cmath>

#include "enum_names.h"

namespace dpo_addon {

Napi::Error to_js_error(Napi::Env env, const dpo::EngineError& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, e.code_name()));
  return err;
}

Napi::Error bad_input(Napi::Env env, const std::string& message) {
  return to_js_error(env, dpo::EngineError(dpo::ErrorCode::BadInput, message));
}

std::vector<int32_t> to_int_vector(Napi::Env env, const Napi::Value& v, const std::string& what) {
  std::vector<int32_t> out;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
    return out;
  }
  if (!v.IsArray()) throw bad_input(env, what + " must be an Int32Array or an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  out.resize(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (!x.IsNumber()) throw bad_input(env, what + "[" + std::to_string(i) + "] is not a number");
    double d = x.As<Napi::Number>().DoubleValue();
    if (d != double(int32_t(d))) throw bad_input(env, what + "[" + std::to_string(i) + "] is not a 32-bit integer");
    out[i] = int32_t(d);
  }
  return out;
}

std::vector<std::vector<int32_t>> to_int_vectors(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw bad_input(env, what + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::vector<int32_t>> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) out[i] = to_int_vector(env, a.Get(i), what + "[" + std::to_string(i) + "]");
  return out;
}

dpo::ScoredSequence to_scored_sequence(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsObject()) throw bad_input(env, what + " must be an object with ids and labels");
  Napi::Object o = v.As<Napi::Object>();
  dpo::ScoredSequence s;
  s.ids = to_int_vector(env, o.Get("ids"), what + ".ids");
  s.labels = to_int_vector(env, o.Get("labels"), what + ".labels");
  return s;
}

std::vector<dpo::ScoredSequence> to_scored_sequences(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw bad_input(env, what + "s must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<dpo::ScoredSequence> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) out[i] = to_scored_sequence(env, a.Get(i), what + " " + std::to_string(i));
  return out;
}

double number_field(Napi::Env env, const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  Napi::Value v = o.Get(key);
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
    throw bad_input(env, std::string(key) + " must be a finite number");
  return v.As<Napi::Number>().DoubleValue();
}

Napi::Object backend_info_to_js(Napi::Env env, const dpo::BackendInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("cudaCompiled", info.cuda_compiled);
  o.Set("cudaAvailable", info.cuda_available);
  o.Set("cudaReason", info.cuda_reason);
  o.Set("cudaDevice", info.cuda_device);
  o.Set("cudaFreeBytes", double(info.cuda_free_bytes));
  o.Set("cudaTotalBytes", double(info.cuda_total_bytes));
  o.Set("cudaSelfCheck", info.cuda_self_check);
  o.Set("cudaSelfCheckNote", info.cuda_self_check_note);
  o.Set("cudaSelfCheckMs", info.cuda_self_check_ms);
  o.Set("cpuThreads", info.cpu_threads);
  o.Set("cpuKernels", info.cpu_kernels);
  return o;
}

Napi::Object model_config_to_js(Napi::Env env, const dpo::ModelConfig& c) {
  Napi::Object cfg = Napi::Object::New(env);
  cfg.Set("architecture", c.architecture);
  cfg.Set("modelType", c.model_type);
  cfg.Set("hidden", c.hidden);
  cfg.Set("layers", c.n_layers);
  cfg.Set("heads", c.n_heads);
  cfg.Set("kvHeads", c.n_kv_heads);
  cfg.Set("headDim", c.head_dim);
  cfg.Set("intermediate", c.intermediate);
  cfg.Set("vocab", c.vocab);
  cfg.Set("maxPosition", c.max_position);
  cfg.Set("context", c.context);
  cfg.Set("ropeTheta", c.rope_theta);
  cfg.Set("ropeType", dpo::rope_type_name(c.rope.type));
  cfg.Set("ropeFactor", c.rope.factor);
  cfg.Set("rmsNormEps", c.rms_norm_eps);
  cfg.Set("tieEmbeddings", c.tie_embeddings);
  cfg.Set("qkvBias", c.qkv_bias);
  cfg.Set("qkNorm", c.qk_norm);
  cfg.Set("slidingWindow", c.sliding_window);
  cfg.Set("prequantized", c.prequantized);
  cfg.Set("bosTokenId", c.bos_token_id);
  Napi::Array eos = Napi::Array::New(env, c.eos_token_ids.size());
  for (size_t i = 0; i < c.eos_token_ids.size(); i++) eos.Set(uint32_t(i), c.eos_token_ids[i]);
  cfg.Set("eosTokenIds", eos);
  cfg.Set("torchDtype", c.torch_dtype);
  return cfg;
}

Napi::Object model_check_to_js(Napi::Env env, const dpo::ModelCheck& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", r.ok);
  o.Set("code", r.error_code);
  o.Set("message", r.message);
  o.Set("config", r.config_read ? Napi::Value(model_config_to_js(env, r.config)) : env.Null());
  o.Set("params", double(r.n_params));
  o.Set("checkpointBytes", double(r.checkpoint_bytes));
  o.Set("quantizedLinears", r.quantized_linears);
  return o;
}

Napi::Object model_info_to_js(Napi::Env env, const dpo::ModelInfo& info) {
  Napi::Object cfg = model_config_to_js(env, info.config);
  Napi::Object o = Napi::Object::New(env);
  o.Set("config", cfg);
  o.Set("params", double(info.n_params));
  o.Set("checkpointBytes", double(info.checkpoint_bytes));
  o.Set("residentBytes", double(info.resident_bytes));
  o.Set("quantizedLinears", info.quantized_linears);
  o.Set("backend", info.backend);
  o.Set("backendNote", info.backend_note);
  o.Set("chainedScoring", info.chained_scoring);
  o.Set("quant", enum_name(quant_modes(), info.quant));
  return o;
}

Napi::Array sequence_logps_to_js(Napi::Env env, const std::vector<dpo::SequenceLogp>& out) {
  Napi::Array arr = Napi::Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("logp", out[i].logp);
    o.Set("tokens", out[i].tokens);
    o.Set("logitsMean", out[i].logits_mean);
    o.Set("tokenLogps", to_typed_array(env, out[i].token_logps));
    arr.Set(uint32_t(i), o);
  }
  return arr;
}

Napi::Array dpo_metrics_to_js(Napi::Env env, const std::vector<dpo::DpoPairMetrics>& out) {
  Napi::Array arr = Napi::Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) {
    const dpo::DpoPairMetrics& r = out[i];
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
  return arr;
}

}  // namespace dpo_addon
