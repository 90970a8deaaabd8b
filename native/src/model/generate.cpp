// Greedy generation with a KV cache (docs/reference/generation.md#the-greedy-loop): prefill all prompts as one
// right-padded batch, then one token per step for the sequences still running. Rows never interact and every op is
// batch-invariant, so each prompt gets the same tokens alone or in a batch (a property peers lack; see
// docs/performance.md#batch-invariant-arithmetic). An attached LoRA adapter is active, as in the notebook's
// post-training generation (docs/reference/generation.md#before-and-after-training).
#include <algorithm>

#include "model/decoder.h"
#include "model/recorded_decoder.h"
#include "model/model_impl.h"

namespace dpo {

GenerateResult Model::generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& opt,
                               const TokenCallback& on_token, const std::atomic<bool>* cancel) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const ModelWeights& m = impl_->weights;
  Backend& be = *impl_->backend;
  const ModelConfig& c = m.config;
  const int V = c.vocab, C = c.hidden, B = int(prompts.size());
  // The context: prompt + answer never pass max_position_embeddings (0 = the config gives none; then only a bound
  // that keeps every size computable).
  const int ctx = c.context;
  constexpr int kMaxNewWithoutContext = 1 << 20;
  if (opt.max_new_tokens < 0) fail(ErrorCode::BadInput, "max_new_tokens must be >= 0");
  if (ctx > 0 && opt.max_new_tokens > ctx)
    fail(ErrorCode::TooLong, "max_new_tokens " + std::to_string(opt.max_new_tokens) +
                                 " is more than the model's context (" + std::to_string(ctx) +
                                 " tokens, max_position_embeddings)");
  if (ctx <= 0 && opt.max_new_tokens > kMaxNewWithoutContext)
    fail(ErrorCode::TooLong, "max_new_tokens " + std::to_string(opt.max_new_tokens) + " is too large (at most " +
                                 std::to_string(kMaxNewWithoutContext) +
                                 " when the config gives no max_position_embeddings)");
  GenerateResult res;
  res.tokens.resize(static_cast<size_t>(B));
  res.finish.assign(size_t(B), "length");
  if (B == 0) return res;

  int T = 0;
  for (int b = 0; b < B; b++) {
    if (prompts[size_t(b)].empty()) fail(ErrorCode::BadInput, "prompt " + std::to_string(b) + " has no tokens");
    if (ctx > 0 && prompts[size_t(b)].size() >= size_t(ctx))
      fail(ErrorCode::TooLong, "prompt " + std::to_string(b) + " has " + std::to_string(prompts[size_t(b)].size()) +
                                   " tokens, which leaves no room for an answer in the model's context (" +
                                   std::to_string(ctx) + " tokens, max_position_embeddings)");
    for (int32_t id : prompts[size_t(b)])
      if (id < 0 || id >= V)
        fail(ErrorCode::BadInput, "prompt " + std::to_string(b) + ": token id " + std::to_string(id) +
                                      " is outside the vocabulary (" + std::to_string(V) + ")");
    T = std::max(T, int(prompts[size_t(b)].size()));
  }
  if (opt.max_new_tokens == 0) return res;
  // Refused before any token is produced rather than part-way through a stream.
  check_sliding_window(c, T + opt.max_new_tokens, "prompt plus max_new_tokens");

  // Capacity for the longest prompt plus its answer, never past the context (each answer stops there: "context").
  int capacity = T + opt.max_new_tokens;
  if (ctx > 0) capacity = std::min(capacity, ctx);
  KvCache cache;
  cache.init(be, c.n_layers, B, capacity, c.n_kv_heads * c.head_dim);

  // Prefill: right-padded prompts; each sequence's next token comes from its last real position.
  std::vector<int> ids(size_t(B) * T, 0), pos(size_t(B) * T);
  std::vector<uint8_t> valid(size_t(B) * T, 0);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      size_t i = size_t(b) * T + t;
      pos[i] = t;
      if (t < int(prompts[size_t(b)].size())) {
        ids[i] = prompts[size_t(b)][size_t(t)];
        valid[i] = 1;
      }
    }
  check_cancel(cancel);
  DeviceArray<float> last(be, size_t(B) * C), logits(be, size_t(B) * V);
  DeviceArray<int> next_d(be, size_t(B));
  {
    DeviceArray<float> hidden(be, size_t(B) * T * C);
    decoder_forward(hidden.get(), impl_->dev, be, ids.data(), pos.data(), valid.data(), B, T, &cache,
                    impl_->lora.get());
    std::vector<int> last_rows(static_cast<size_t>(B));
    for (int b = 0; b < B; b++) last_rows[size_t(b)] = b * T + int(prompts[size_t(b)].size()) - 1;
    DeviceArray<int> rows_d = DeviceArray<int>::from_host(be, last_rows);
    be.gather_rows(last.get(), hidden.get(), rows_d.get(), B, C);
  }

  std::vector<int> seq(static_cast<size_t>(B)), cur_pos(static_cast<size_t>(B)), next(static_cast<size_t>(B));
  for (int b = 0; b < B; b++) {
    seq[size_t(b)] = b;
    cur_pos[size_t(b)] = int(prompts[size_t(b)].size());
  }
  int M = B;
  auto is_eos = [&](int tok) { return std::find(opt.eos_ids.begin(), opt.eos_ids.end(), tok) != opt.eos_ids.end(); };

  RecordedDecoder decoder(impl_->dev, be, cache, impl_->lora.get());
  for (int step = 0; M > 0; step++) {
    impl_->dev.greedy_tokens(be, next_d.get(), logits.get(), last.get(), M);
    next_d.download(next.data(), size_t(M));
    // Emit, then keep only the sequences that go on (order preserved).
    int kept = 0;
    for (int r = 0; r < M; r++) {
      const int b = seq[size_t(r)], tok = next[size_t(r)];
      res.tokens[size_t(b)].push_back(tok);
      if (on_token) on_token(b, tok);
      if (is_eos(tok)) {
        res.finish[size_t(b)] = "eos";
      } else if (int(res.tokens[size_t(b)].size()) >= opt.max_new_tokens) {
        res.finish[size_t(b)] = "length";
      } else if (ctx > 0 && prompts[size_t(b)].size() + res.tokens[size_t(b)].size() >= size_t(ctx)) {
        res.finish[size_t(b)] = "context";  // prompt + answer fill the context
      } else {
        seq[size_t(kept)] = b;
        next[size_t(kept)] = tok;
        cur_pos[size_t(kept)] = cur_pos[size_t(r)];
        kept++;
      }
    }
    M = kept;
    if (M == 0) break;
    if (cancel && cancel->load(std::memory_order_relaxed)) {
      for (int r = 0; r < M; r++) res.finish[size_t(seq[size_t(r)])] = "cancelled";
      break;
    }
    decoder.step(last.get(), seq.data(), next.data(), cur_pos.data(), M);
    res.decode_steps++;
    for (int r = 0; r < M; r++) cur_pos[size_t(r)]++;
  }
  res.replayed_steps = decoder.replays();
  return res;
}

}  // namespace dpo
