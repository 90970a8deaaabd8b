// Model: inference calls (logps, generate) and their workers.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cancel_token.h"
#include "model_wrap.h"
#include "workers.h"

namespace dpo_addon {

Napi::FunctionReference* ModelWrap::constructor = nullptr;

// --- model.logps([{ids, labels}], padId, cancel?)
class LogpsWorker : public PromiseWorker<Napi::AsyncWorker> {
 public:
  LogpsWorker(Napi::Env env, std::shared_ptr<dpo::Model> m, std::vector<dpo::ScoredSequence> batch, int32_t pad,
              CancelFlag cancel, bool use_adapter)
      : PromiseWorker(env), model_(std::move(m)), batch_(std::move(batch)), pad_(pad), cancel_(std::move(cancel)),
        use_adapter_(use_adapter) {}
  void Execute() override { guarded([&] { out_ = model_->logps(batch_, pad_, cancel_.get(), use_adapter_); }); }
  void OnOK() override { deferred_.Resolve(sequence_logps_to_js(Env(), out_)); }

 private:
  std::shared_ptr<dpo::Model> model_;
  std::vector<dpo::ScoredSequence> batch_;
  int32_t pad_;
  CancelFlag cancel_;
  bool use_adapter_;
  std::vector<dpo::SequenceLogp> out_;
};

Napi::Value ModelWrap::Logps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber())
    throw bad_input(env, "logps(sequences, padId) needs an array of {ids, labels} and a pad id");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<dpo::ScoredSequence> batch(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsObject()) throw bad_input(env, "sequence " + std::to_string(i) + " is not an object");
    Napi::Object o = v.As<Napi::Object>();
    batch[i].ids = to_int_vector(env, o.Get("ids"), "sequence " + std::to_string(i) + ".ids");
    batch[i].labels = to_int_vector(env, o.Get("labels"), "sequence " + std::to_string(i) + ".labels");
  }
  const bool use_adapter = !(info.Length() > 3 && info[3].IsBoolean() && !info[3].As<Napi::Boolean>().Value());
  auto* w = new LogpsWorker(env, m, std::move(batch), info[1].As<Napi::Number>().Int32Value(),
                            info.Length() > 2 ? cancel_flag_of(info[2]) : nullptr, use_adapter);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
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
      out_ = model_->generate(prompts_, opt_, [&](int s, int32_t t) {
        if (!stream) return;
        TokenEvent e{s, t};
        progress.Send(&e, 1);
      }, cancel_.get());
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
      Napi::Int32Array t = Napi::Int32Array::New(env, out_.tokens[i].size());
      std::copy(out_.tokens[i].begin(), out_.tokens[i].end(), t.Data());
      tokens.Set(uint32_t(i), t);
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
      throw to_js_error(env, dpo::EngineError(dpo::ErrorCode::TooLong, std::string("maxNewTokens ") + shown + " is more than " +
                                                                            (ctx > 0 ? "the model's context (" + std::to_string(ctx) + " tokens, max_position_embeddings)"
                                                                                     : std::string("1048576 (the config gives no max_position_embeddings)"))));
    }
    opt.max_new_tokens = int(n);
  }
  if (o.Has("eosIds")) opt.eos_ids = to_int_vector(env, o.Get("eosIds"), "eosIds");
  Napi::Function cb = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  auto* w = new GenerateWorker(env, m, to_int_vectors(env, info[0], "prompts"), opt, cb,
                               info.Length() > 3 ? cancel_flag_of(info[3]) : nullptr);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace dpo_addon
