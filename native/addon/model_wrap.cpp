// Model: inference calls (logps, generate) and their workers.
#include <cmath>
#include <cstdio>

#include "cancel_token.h"
#include "model_wrap.h"
#include "workers.h"

namespace dpo_addon {

Napi::FunctionReference* ModelWrap::constructor = nullptr;

// --- model.logps([{ids, labels}], padId, cancel?, useAdapter?, withLogitsMean?)
Napi::Value ModelWrap::Logps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber())
    throw bad_input(env, "logps(sequences, padId) needs an array of {ids, labels} and a pad id");
  const int32_t pad = info[1].As<Napi::Number>().Int32Value();
  // Optional booleans, true unless given as false.
  auto flag = [&](size_t i) {
    return !(info.Length() > i && info[i].IsBoolean() && !info[i].As<Napi::Boolean>().Value());
  };
  const bool use_adapter = flag(3), with_logits_mean = flag(4);
  return run_async(
      env,
      [m, batch = to_scored_sequences(env, info[0], "sequence"), pad, cancel = cancel_arg(info, 2), use_adapter,
       with_logits_mean] { return m->logps(batch, pad, cancel.get(), use_adapter, with_logits_mean); },
      sequence_logps_to_js);
}

// --- model.generate(prompts, {maxNewTokens, eosIds}, onToken?, cancel?)
struct TokenEvent {
  int32_t sequence, token;
};

class GenerateWorker : public PromiseWorker<Napi::AsyncProgressQueueWorker<TokenEvent>> {
 public:
  GenerateWorker(Napi::Env env, std::shared_ptr<dpo::Model> m, std::vector<std::vector<int32_t>> prompts,
                 dpo::GenerateOptions opt, Napi::Function on_token, CancelFlag cancel)
      : PromiseWorker(env), model_(std::move(m)), prompts_(std::move(prompts)), opt_(std::move(opt)),
        cancel_(std::move(cancel)) {
    if (!on_token.IsEmpty()) token_cb_ = Napi::Persistent(on_token);
  }
  void Execute(const ExecutionProgress& progress) override {
    const bool stream = !token_cb_.IsEmpty();
    guarded([&] {
      out_ = model_->generate(
          prompts_, opt_,
          [&](int s, int32_t t) {
            if (!stream) return;
            TokenEvent e{s, t};
            progress.Send(&e, 1);
          },
          cancel_.get());
    });
  }
  void OnProgress(const TokenEvent* data, size_t count) override {
    for (size_t i = 0; i < count; i++)
      token_cb_.Call({Napi::Number::New(Env(), data[i].sequence), Napi::Number::New(Env(), data[i].token)});
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array tokens = Napi::Array::New(env, out_.tokens.size());
    Napi::Array finish = Napi::Array::New(env, out_.finish.size());
    for (size_t i = 0; i < out_.tokens.size(); i++) {
      tokens.Set(uint32_t(i), to_typed_array(env, out_.tokens[i]));
      finish.Set(uint32_t(i), out_.finish[i]);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("tokens", tokens);
    o.Set("finish", finish);
    deferred_.Resolve(o);
  }

 private:
  std::shared_ptr<dpo::Model> model_;
  std::vector<std::vector<int32_t>> prompts_;
  dpo::GenerateOptions opt_;
  CancelFlag cancel_;
  Napi::FunctionReference token_cb_;
  dpo::GenerateResult out_;
};

Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 2 || !info[1].IsObject()) throw bad_input(env, "generate(prompts, options) needs options");
  dpo::GenerateOptions opt;
  Napi::Object o = info[1].As<Napi::Object>();
  if (o.Has("maxNewTokens")) {
    // Read as a double: Int32Value() would wrap 1e12 to a negative number and call it "not an integer".
    Napi::Value v = o.Get("maxNewTokens");
    const double n = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(n >= 0) || n != std::floor(n)) throw bad_input(env, "maxNewTokens must be a non-negative integer");
    const int ctx = m->info().config.context;
    if (n > double(ctx > 0 ? ctx : (1 << 20))) {
      char shown[32];
      std::snprintf(shown, sizeof shown, "%.15g", n);
      throw to_js_error(
          env, dpo::EngineError(
                   dpo::ErrorCode::TooLong,
                   std::string("maxNewTokens ") + shown + " is more than " +
                       (ctx > 0 ? "the model's context (" + std::to_string(ctx) + " tokens, max_position_embeddings)"
                                : std::string("1048576 (the config gives no max_position_embeddings)"))));
    }
    opt.max_new_tokens = int(n);
  }
  if (o.Has("eosIds")) opt.eos_ids = to_int_vector(env, o.Get("eosIds"), "eosIds");
  Napi::Function cb = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  return queue_worker<GenerateWorker>(env, m, to_int_vectors(env, info[0], "prompts"), opt, cb, cancel_arg(info, 3));
}

}  // namespace dpo_addon
