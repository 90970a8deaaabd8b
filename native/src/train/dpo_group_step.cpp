// The micro-batches of one optimizer step in one chained call (docs/performance.md#chained-training-steps). Each
// micro-batch keeps its own layout (model/shared_prefix.h) and its own loss; their decoder rows are chained after the
// positions that all of them start with (the chat template and system prompt), which run once, and every row-wise op
// (the matmuls, norms, LoRA, the logits pass) runs once over all of them. Attention runs per micro-batch row on that
// row as it was (model/segment_attention.h), so hidden states, log-probs and metrics are the bits of one call per
// micro-batch; only the LoRA gradients sum in another order.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "cpu/attended_keys.h"
#include "dpo/errors.h"
#include "model/decoder.h"
#include "model/last_block_rows.h"
#include "model/logits_pass.h"
#include "model/model_impl.h"
#include "model/segment_attention.h"
#include "train/dpo_group_plan.h"
#include "train/dpo_micro_batch.h"

namespace dpo {

namespace {

// DPO_CHAINED_STEPS=0 runs every micro-batch on its own (benchmarks and tests compare both in one process).
bool chaining_enabled(const Backend& be, const LoraAdapter& lora) {
  const char* env = std::getenv("DPO_CHAINED_STEPS");
  if (env && std::string(env) == "0") return false;
  const char* recompute = std::getenv("DPO_RECOMPUTE");
  if (recompute && std::string(recompute) == "always") return false;  // a chain keeps every activation
  // LoRA dropout draws its masks per decoder row, which a chain would share between micro-batches.
  return lora.config.dropout == 0.0f && prefix_sharing_enabled(be);
}

// A bad input of micro-batch i again, named: "pair 0" alone would be ambiguous in a step.
[[noreturn]]
void rethrow_naming(const EngineError& e, size_t i) {
  if (e.code() != ErrorCode::BadInput) throw e;
  fail(e.code(), "micro-batch " + std::to_string(i) + ": " + e.what());
}

}  // namespace

// Rows from the last: a row that gets a gradient passes it to every key it sees (cpu/attended_keys.h, attention's own
// rule). Padding is never scored and never a key; a sequence's last position predicts nothing, and only its
// own padding (and itself) sees it.
std::vector<uint8_t> gradient_rows(const ScoringLayout& l) {
  const PaddedBatch& r = l.rows;
  std::vector<uint8_t> live(size_t(l.decoder_rows()), 0);
  for (const int e : l.entry_row) live[size_t(e)] = 1;
  std::vector<int> keys(size_t(r.T));
  for (int b = 0; b < r.B; b++)
    for (int q = r.T - 1; q >= 0; q--) {
      const size_t iq = size_t(b) * r.T + q;
      if (!live[iq]) continue;
      const int* skip = l.packed() ? l.key_skip.data() + iq * kKeySkipInts : nullptr;
      const int64_t last = std::min<int64_t>(r.pos[iq] + cpu::skipped_length(skip), r.T - 1);
      const int n = cpu::attended_keys(keys.data(), last, skip, r.valid.data() + size_t(b) * r.T);
      for (int j = 0; j < n; j++) live[size_t(b) * r.T + size_t(keys[size_t(j)])] = 1;
    }
  return live;
}

uint64_t chain_bytes(const ModelConfig& c, const std::vector<const ScoringLayout*>& lays) {
  uint64_t rows = 0, probs = 0;
  for (const ScoringLayout* l : lays) {
    rows += uint64_t(l->decoder_rows());
    probs += uint64_t(l->rows.B) * l->rows.T * l->rows.T;
  }
  return (block_activation_bytes(c, int(rows), 1) + probs * c.n_heads * sizeof(float)) * uint64_t(c.n_layers);
}

int common_start(const std::vector<const ScoringLayout*>& lays) {
  const PaddedBatch& first = lays[0]->rows;
  int C = first.T;
  for (const ScoringLayout* l : lays) {
    const PaddedBatch& r = l->rows;
    C = std::min(C, r.T - 1);
    for (int e : l->entry_row) C = std::min(C, e % r.T);
    for (int b = 0; b < r.B; b++) {
      int n = 0;
      while (n < C) {
        const size_t i = size_t(b) * r.T + n;
        const bool skips = l->packed() && (l->key_skip[i * kKeySkipInts] < l->key_skip[i * kKeySkipInts + 1] ||
                                           l->key_skip[i * kKeySkipInts + 2] < l->key_skip[i * kKeySkipInts + 3]);
        if (r.ids[i] != first.ids[size_t(n)] || r.pos[i] != n || !r.valid[i] || skips) break;
        n++;
      }
      C = n;
    }
  }
  return std::max(C, 0);
}

std::vector<std::vector<size_t>> plan_chains(const std::vector<const ScoringLayout*>& lays, const ModelConfig& c,
                                             uint64_t budget) {
  std::vector<std::vector<size_t>> chains;
  std::vector<const ScoringLayout*> open;
  for (size_t i = 0; i < lays.size(); i++) {
    if (!lays[i]) {  // runs on its own; nothing chains across it
      chains.push_back({i});
      open.clear();
      continue;
    }
    open.push_back(lays[i]);
    if (open.size() == 1 || chain_bytes(c, open) > budget) {
      chains.push_back({});
      open = {lays[i]};
    }
    chains.back().push_back(i);
  }
  return chains;
}

namespace {

// The rows of a chained call being laid out: ids, positions and key flags.
struct ChainRows {
  std::vector<int> ids, pos;
  std::vector<uint8_t> valid;
  // Appends decoder row i of r; returns its index here.
  int add(const PaddedBatch& r, size_t i) {
    ids.push_back(r.ids[i]), pos.push_back(r.pos[i]), valid.push_back(r.valid[i]);
    return int(ids.size()) - 1;
  }
  void append(const ChainRows& o) {
    ids.insert(ids.end(), o.ids.begin(), o.ids.end());
    pos.insert(pos.end(), o.pos.begin(), o.pos.end());
    valid.insert(valid.end(), o.valid.begin(), o.valid.end());
  }
};

// The chain of micro-batches mbs (step indices `index`, for error messages) with layouts lays, in one call.
std::vector<std::vector<DpoPairMetrics>> chained_step(ModelImpl& impl,
                                                      const std::vector<const std::vector<DpoPair>*>& mbs,
                                                      const std::vector<const ScoringLayout*>& lays,
                                                      const std::vector<size_t>& index, const DpoOptions& o,
                                                      const std::atomic<bool>* cancel) {
  const ModelConfig& c = impl.weights.config;
  Backend& be = *impl.backend;
  LoraAdapter* lora = impl.lora.get();
  const int C = common_start(lays);

  // The chained row: [0, C) common, then each layout row's positions past C that can get a gradient, as one segment,
  // then the other positions of every segment (gradient_rows: padding, which TRL's logits metric reads, and each
  // sequence's last position). Their gradient is zero, so the backward's row-wise ops stop before them
  // (TrainActs::backward_rows). global[k][i]: the chained row of layout k's decoder row i.
  ChainRows chain, tail;
  const PaddedBatch& first = lays[0]->rows;
  for (int t = 0; t < C; t++) chain.add(first, size_t(t));
  std::vector<std::vector<uint8_t>> with_gradient;
  int live = C;
  for (const ScoringLayout* l : lays) {
    with_gradient.push_back(gradient_rows(*l));
    for (int b = 0; b < l->rows.B; b++)
      for (int t = C; t < l->rows.T; t++) live += with_gradient.back()[size_t(b) * l->rows.T + t];
  }
  std::vector<AttentionSegment> segments;
  std::vector<std::vector<int>> global(lays.size());
  for (size_t k = 0; k < lays.size(); k++) {
    const ScoringLayout& l = *lays[k];
    const PaddedBatch& r = l.rows;
    global[k].resize(size_t(l.decoder_rows()));
    for (int b = 0; b < r.B; b++) {
      AttentionSegment s;
      for (int t = 0; t < r.T; t++) {
        const size_t i = size_t(b) * r.T + t;
        if (t < C) {
          global[k][i] = t;
          continue;
        }
        global[k][i] = with_gradient[k][i] ? chain.add(r, i) : live + tail.add(r, i);
        s.rows.push_back(global[k][i]);
      }
      s.pos.assign(r.pos.begin() + ptrdiff_t(b) * r.T, r.pos.begin() + ptrdiff_t(b + 1) * r.T);
      s.valid.assign(r.valid.begin() + ptrdiff_t(b) * r.T, r.valid.begin() + ptrdiff_t(b + 1) * r.T);
      if (l.packed())
        s.key_skip.assign(l.key_skip.begin() + ptrdiff_t(b) * r.T * kKeySkipInts,
                          l.key_skip.begin() + ptrdiff_t(b + 1) * r.T * kKeySkipInts);
      segments.push_back(std::move(s));
    }
  }
  chain.append(tail);
  const int M = int(chain.ids.size());
  const SegmentPlan plan(be, C, segments);
  // Every layout's scored entries, in layout order, on the chained rows.
  std::vector<int> rows, targets;
  std::vector<size_t> first_entry;
  for (size_t k = 0; k < lays.size(); k++) {
    first_entry.push_back(rows.size());
    for (size_t e = 0; e < lays[k]->entry_row.size(); e++) {
      rows.push_back(global[k][size_t(lays[k]->entry_row[e])]);
      targets.push_back(lays[k]->entry_target[e]);
      if (rows.back() >= live) fail(ErrorCode::Internal, "chained step: a scored row is past the gradient rows");
    }
  }

  check_cancel(cancel);
  DeviceArray<float> hidden(be, size_t(M) * c.hidden);
  TrainActs acts;
  decoder_forward_train(hidden.get(), acts, impl.dev, be, chain.ids.data(), chain.pos.data(), chain.valid.data(), 1, M,
                        lora, nullptr, &plan);
  LogitsStats st = logits_forward_entries(impl.dev, be, hidden.get(), rows, targets, M, true);

  // Each micro-batch's loss from its own rows and entries, exactly as dpo_accumulate computes it.
  std::vector<std::vector<DpoPairMetrics>> out;
  std::vector<float> dlogp(rows.size());
  for (size_t k = 0; k < lays.size(); k++) {
    const ScoringLayout& l = *lays[k];
    std::vector<double> row_sum(global[k].size());
    for (size_t i = 0; i < row_sum.size(); i++) row_sum[i] = st.row_sum[size_t(global[k][i])];
    const std::vector<float> entry_logp(st.entry_logp.begin() + ptrdiff_t(first_entry[k]),
                                        st.entry_logp.begin() + ptrdiff_t(first_entry[k] + l.entry_row.size()));
    std::vector<float> d;
    try {
      out.push_back(dpo_micro_batch_loss(*mbs[k], l, row_sum, entry_logp, c.vocab, o, d));
    } catch (const EngineError& e) {
      rethrow_naming(e, index[k]);
    }
    std::copy(d.begin(), d.end(), dlogp.begin() + ptrdiff_t(first_entry[k]));
  }

  check_cancel(cancel);
  DeviceArray<float> dhidden = DeviceArray<float>::zeros(be, size_t(M) * c.hidden);
  logits_backward_entries(dhidden.get(), impl.dev, be, hidden.get(), st, dlogp);
  acts.backward_rows = live;
  acts.output_grad_rows = rows_once(rows);
  decoder_backward(dhidden.get(), acts, impl.dev, be, lora);
  return out;
}

}  // namespace

std::vector<std::vector<DpoPairMetrics>> Model::dpo_accumulate_group(
    const std::vector<std::vector<DpoPair>>& micro_batches, int32_t pad_id, const DpoOptions& o,
    const std::atomic<bool>* cancel) {
  std::vector<std::vector<DpoPairMetrics>> out(micro_batches.size());
  // Chains of consecutive micro-batches whose kept activations fit the budget; a chain of one runs on its own.
  std::vector<std::vector<size_t>> chains;
  std::vector<ScoringLayout> lays(micro_batches.size());
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    LoraAdapter* lora = impl_->lora.get();
    if (!lora) fail(ErrorCode::BadInput, "dpo_accumulate needs a LoRA adapter: attach one first");
    check_dpo_options(o);
    const ModelConfig& c = impl_->weights.config;
    const bool chain = micro_batches.size() > 1 && chaining_enabled(*impl_->backend, *lora);
    std::vector<const ScoringLayout*> planned(micro_batches.size(), nullptr);
    for (size_t i = 0; chain && i < micro_batches.size(); i++)
      if (!micro_batches[i].empty()) {
        lays[i] = dpo_layout(micro_batches[i], pad_id, c, true);
        planned[i] = &lays[i];
      }
    chains = plan_chains(planned, c, kKeptActivationBudget);
  }
  for (const std::vector<size_t>& ch : chains) {
    if (ch.size() == 1) {
      try {
        out[ch[0]] = dpo_accumulate(micro_batches[ch[0]], pad_id, o, cancel);
      } catch (const EngineError& e) {
        rethrow_naming(e, ch[0]);
      }
      continue;
    }
    std::lock_guard<std::mutex> lock(impl_->mutex);
    std::vector<const std::vector<DpoPair>*> mbs;
    std::vector<const ScoringLayout*> ls;
    for (size_t i : ch) mbs.push_back(&micro_batches[i]), ls.push_back(&lays[i]);
    std::vector<std::vector<DpoPairMetrics>> got = chained_step(*impl_, mbs, ls, ch, o, cancel);
    for (size_t j = 0; j < ch.size(); j++) out[ch[j]] = std::move(got[j]);
  }
  return out;
}

}  // namespace dpo
