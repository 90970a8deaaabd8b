// Promise-returning AsyncWorkers: every slow engine call runs off the JS thread; errors reject with `.code`.
// run_async covers the common case (one engine call, one result to convert); workers that stream progress back to
// JS derive from PromiseWorker themselves and are started with queue_worker.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

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

// Creates the worker (N-API deletes it when it finishes), queues it and returns its promise.
template <typename Worker, typename... Args>
Napi::Promise queue_worker(Napi::Env env, Args&&... args) {
  auto* w = new Worker(env, std::forward<Args>(args)...);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// Runs `run` (which owns copies of everything it reads) off the JS thread and resolves with to_js(env, its result).
template <typename Run, typename ToJs>
class CallWorker : public PromiseWorker<Napi::AsyncWorker> {
 public:
  CallWorker(Napi::Env env, Run run, ToJs to_js) : PromiseWorker(env), run_(std::move(run)), to_js_(std::move(to_js)) {}
  void Execute() override {
    guarded([&] { out_ = run_(); });
  }
  void OnOK() override { deferred_.Resolve(to_js_(Env(), out_)); }

 private:
  Run run_;
  ToJs to_js_;
  std::invoke_result_t<Run&> out_{};
};

template <typename Run, typename ToJs>
Napi::Promise run_async(Napi::Env env, Run run, ToJs to_js) {
  return queue_worker<CallWorker<Run, ToJs>>(env, std::move(run), std::move(to_js));
}

}  // namespace dpo_addon
