// Conversions between JS values and engine types, and engine errors -> JS errors with `.code`.
#pragma once
#include <napi.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dpo/engine.h"

namespace dpo_addon {

Napi::Error to_js_error(Napi::Env env, const dpo::EngineError& e);
Napi::Error bad_input(Napi::Env env, const std::string& message);  // code E_BAD_INPUT

// fn() on the calling thread (quick engine calls), an EngineError rethrown as the coded JS error.
template <typename Fn>
auto engine_call(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const dpo::EngineError& e) {
    throw to_js_error(env, e);
  }
}

// An Int32Array or an array of integers.
std::vector<int32_t> to_int_vector(Napi::Env env, const Napi::Value& v, const std::string& what);
std::vector<std::vector<int32_t>> to_int_vectors(Napi::Env env, const Napi::Value& v, const std::string& what);

// A {ids, labels} object (nativeTypes.ts ScoredSequence); `what` names it in errors ("sequence 3", "pair 2 chosen").
dpo::ScoredSequence to_scored_sequence(Napi::Env env, const Napi::Value& v, const std::string& what);
// An array of them, element i named "<what> i".
std::vector<dpo::ScoredSequence> to_scored_sequences(Napi::Env env, const Napi::Value& v, const std::string& what);

// A copy of v as a new Float32Array / Int32Array / Uint8Array (T = float / int32_t / uint8_t).
template <typename T>
Napi::TypedArrayOf<T> to_typed_array(Napi::Env env, const std::vector<T>& v) {
  Napi::TypedArrayOf<T> a = Napi::TypedArrayOf<T>::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

// o[key] as a number, `fallback` when absent; E_BAD_INPUT when present but not a finite number.
double number_field(Napi::Env env, const Napi::Object& o, const char* key, double fallback);

Napi::Object backend_info_to_js(Napi::Env env, const dpo::BackendInfo& info);
Napi::Object model_info_to_js(Napi::Env env, const dpo::ModelInfo& info);
Napi::Object model_config_to_js(Napi::Env env, const dpo::ModelConfig& c);
Napi::Object model_check_to_js(Napi::Env env, const dpo::ModelCheck& check);
Napi::Array sequence_logps_to_js(Napi::Env env, const std::vector<dpo::SequenceLogp>& out);
Napi::Array dpo_metrics_to_js(Napi::Env env, const std::vector<dpo::DpoPairMetrics>& out);

}  // namespace dpo_addon
