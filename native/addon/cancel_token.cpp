// CancelToken helpers: recognising a token among a call's arguments.
#include "cancel_token.h"

namespace dpo_addon {

CancelFlag cancel_flag_of(const Napi::Value& v) {
  if (v.IsObject()) {
    Napi::Object o = v.As<Napi::Object>();
    if (o.InstanceOf(o.Env().GetInstanceData<Napi::FunctionReference>()->Value())) {
      return CancelToken::Unwrap(o)->flag();
    }
  }
  return nullptr;
}

CancelFlag cancel_arg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i ? cancel_flag_of(info[i]) : nullptr;
}

}  // namespace dpo_addon
