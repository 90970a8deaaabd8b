// exportOps: the engine's export arithmetic (include/dpo/export_ops.h) on typed arrays, synchronous (each call is one
// tensor; the TypeScript exporters in src-main/services/export/ stream a model through them tensor by tensor).
#include "export_ops.h"

#include <string>

#include "convert.h"
#include "dpo/export_ops.h"
#include "enum_names.h"

namespace dpo_addon {
namespace {

Napi::Float32Array float_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw bad_input(info.Env(), std::string(what) + " must be a Float32Array");
  return info[i].As<Napi::Float32Array>();
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) throw bad_input(info.Env(), std::string(what) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != double(int64_t(v)))
    throw bad_input(info.Env(), std::string(what) + " must be a non-negative integer");
  return int64_t(v);
}

// mergeLora(w, rows, cols, a, b, rank, scale): w += scale * b @ a, in place.
Napi::Value MergeLora(const Napi::CallbackInfo& info) {
  Napi::Float32Array w = float_arg(info, 0, "w");
  const int64_t rows = int_arg(info, 1, "rows"), cols = int_arg(info, 2, "cols");
  Napi::Float32Array a = float_arg(info, 3, "a"), b = float_arg(info, 4, "b");
  const int64_t rank = int_arg(info, 5, "rank");
  if (info.Length() <= 6 || !info[6].IsNumber()) throw bad_input(info.Env(), "scale must be a number");
  const float scale = info[6].As<Napi::Number>().FloatValue();
  if (int64_t(w.ElementLength()) != rows * cols || int64_t(a.ElementLength()) != rank * cols ||
      int64_t(b.ElementLength()) != rows * rank)
    throw bad_input(info.Env(), "mergeLora: w (" + std::to_string(w.ElementLength()) + "), a (" +
                                    std::to_string(a.ElementLength()) + ") and b (" +
                                    std::to_string(b.ElementLength()) + ") do not fit rows " + std::to_string(rows) +
                                    ", cols " + std::to_string(cols) + ", rank " + std::to_string(rank));
  dpo::lora_merge_into(w.Data(), a.Data(), b.Data(), rows, cols, rank, scale);
  return info.Env().Undefined();
}

// nf4Effective(w, rows, cols): w becomes the weights the quant-nf4 path multiplies with, in place.
Napi::Value Nf4Effective(const Napi::CallbackInfo& info) {
  Napi::Float32Array w = float_arg(info, 0, "w");
  const int64_t rows = int_arg(info, 1, "rows"), cols = int_arg(info, 2, "cols");
  if (int64_t(w.ElementLength()) != rows * cols)
    throw bad_input(info.Env(), "nf4Effective: w does not have rows * cols values");
  dpo::nf4_effective_weight(w.Data(), rows, cols);
  return info.Env().Undefined();
}

// ggmlEncode(kind, x): 'f16' -> 2 bytes per value; 'q8_0' / 'q4_0' -> blocks of 32 (x.length % 32 == 0).
Napi::Value GgmlEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw bad_input(env, "ggmlEncode(kind, x) needs a kind");
  const GgmlKind kind = parse_enum(env, ggml_kinds(), "ggmlEncode: kind", info[0].As<Napi::String>());
  Napi::Float32Array x = float_arg(info, 1, "x");
  const int64_t n = int64_t(x.ElementLength());
  if (kind == GgmlKind::F16) {
    Napi::Uint8Array out = Napi::Uint8Array::New(env, size_t(n) * 2);
    dpo::convert_f16(x.Data(), n, reinterpret_cast<uint16_t*>(out.Data()));
    return out;
  }
  if (n % dpo::kGgmlBlock != 0)
    throw bad_input(env, std::string("ggmlEncode: ") + enum_name(ggml_kinds(), kind) +
                             " needs a multiple of 32 values, got " + std::to_string(n));
  const int64_t bytes = n / dpo::kGgmlBlock * (kind == GgmlKind::Q8_0 ? dpo::kQ8_0BlockBytes : dpo::kQ4_0BlockBytes);
  Napi::Uint8Array out = Napi::Uint8Array::New(env, size_t(bytes));
  if (kind == GgmlKind::Q8_0) dpo::quantize_q8_0(x.Data(), n, out.Data());
  else dpo::quantize_q4_0(x.Data(), n, out.Data());
  return out;
}

}  // namespace

Napi::Object ExportOpsInit(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("mergeLora", Napi::Function::New(env, MergeLora));
  o.Set("nf4Effective", Napi::Function::New(env, Nf4Effective));
  o.Set("ggmlEncode", Napi::Function::New(env, GgmlEncode));
  return o;
}

}  // namespace dpo_addon
