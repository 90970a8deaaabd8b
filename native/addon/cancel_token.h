// The JS CancelToken: a flag shared with running workers, so long engine calls can stop between steps.
#pragma once
#include <napi.h>

#include "workers.h"

namespace dpo_addon {

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

// The flag of a CancelToken argument, or null when v is not one.
CancelFlag cancel_flag_of(const Napi::Value& v);
// The flag of the optional token argument info[i] (null when absent or not a token).
CancelFlag cancel_arg(const Napi::CallbackInfo& info, size_t i);

}  // namespace dpo_addon
