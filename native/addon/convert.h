// Conversions between JS values and engine types, and engine errors -> JS errors with `.code`.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "dpo/engine.h"

namespace dpo_addon {

Napi::Error to_js_error(Napi::Env env, const dpo::EngineError& e);
Napi::Error bad_input(Napi::Env env, const std::string& message);  // code E_BAD_INPUT

// An Int32Array or an array of integers.
std::vector<int32_t> to_int_vector(Napi::Env env, const Napi::Value& v, const std::string& what);
std::vector<std::vector<int32_t>> to_int_vectors(Napi::Env env, const Napi::Value& v, const std::string& what);

// o[key] as a number, `fallback` when absent; E_BAD_INPUT when present but not a finite number.
double number_field(Napi::Env env, const Napi::Object& o, const char* key, double fallback);

Napi::Object backend_info_to_js(Napi::Env env, const dpo::BackendInfo& info);
Napi::Object model_info_to_js(Napi::Env env, const dpo::ModelInfo& info);
Napi::Object model_config_to_js(Napi::Env env, const dpo::ModelConfig& c);
Napi::Object model_check_to_js(Napi::Env env, const dpo::ModelCheck& check);
Napi::Array sequence_logps_to_js(Napi::Env env, const std::vector<dpo::SequenceLogp>& out);
Napi::Array dpo_metrics_to_js(Napi::Env env, const std::vector<dpo::DpoPairMetrics>& out);

}  // namespace dpo_addon
