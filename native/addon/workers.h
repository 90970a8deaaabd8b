// Promise-returning AsyncWorkers: every slow engine call runs off the JS thread; errors reject with `.code`.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>

#include "dpo/engine.h"

namespace dpo_addon {

using CancelFlag = std::shared_ptr<std::atomic<bool>>;

// Base: owns the deferred promise and turns EngineError into a coded JS error.
template <typename Base>
class PromiseWorker : public Base {
 public:
  explicit PromiseWorker(Napi::Env env) : Base(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  // Runs fn, capturing an engine error code for OnError.
  template <typename Fn>
  void guarded(Fn&& fn) {
    try {
      fn();
    } catch (const dpo::EngineError& e) {
      code_ = e.code_name();
      this->SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "E_OOM";
      this->SetError("out of memory: use a smaller model, --quant nf4, or fewer prompts at once");
    } catch (const std::exception& e) {
      code_ = "E_INTERNAL";
      this->SetError(e.what());
    }
  }
  void OnError(const Napi::Error& e) override {
    Napi::Error err = e;
    err.Set("code", Napi::String::New(this->Env(), code_));
    deferred_.Reject(err.Value());
  }
  Napi::Promise::Deferred deferred_;
  std::string code_ = "E_INTERNAL";
};

}  // namespace dpo_addon
