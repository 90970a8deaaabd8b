// Prompt-prefix sharing (docs/performance.md#prompt-prefix-sharing): a DPO pair's answers run in one decoder row
// around their shared prompt. Log-probs, token log-probs and logit-mean metrics must equal the unshared layout's bit
// for bit (reference pass and DPO step); LoRA gradients differ only in summation order. Every fallback case is here:
// no shared prefix, an answer that is a prefix of the other, answers that share tokens past the prompt, an odd
// sequence out, LoRA dropout, the switch DPO_PREFIX_SHARING=0. Chained rows (no logits metric asked for,
// docs/performance.md#chained-rows-without-the-logits-metric) must give the same log-probs too.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "dpo/engine.h"
#include "family_model.h"
#include "lora_grad_checks.h"
#include "model/logits_pass.h"
#include "model/model_impl.h"
#include "model/shared_prefix.h"
#include "random_lora_b.h"
#include "scored_pairs.h"
#include "tiny_model.h"

using namespace dpo_test;

namespace {

void set_sharing(bool on) { setenv("DPO_PREFIX_SHARING", on ? "1" : "0", 1); }

// Every layout case: pairs 0-3 share a prefix, pair 4 shares nothing.
std::vector<dpo::DpoPair> varied_pairs(int V) {
  std::vector<dpo::DpoPair> p(5);
  p[0].chosen = scored({1, 5, 9, 33, 12, 2}, 3, V);  // the HW6 case: the answers differ at their first token
  p[0].rejected = scored({1, 5, 9, 40, 3, 22, 18, 2}, 3, V);
  p[1].chosen = scored({4, 8, 15, 16, 23, 42, 2}, 2, V);  // the ids agree two tokens past the prompt
  p[1].rejected = scored({4, 8, 15, 16, 7, 2}, 2, V);
  p[2].chosen = scored({3, 9, 27, 20}, 2, V);  // the chosen answer is a prefix of the rejected one
  p[2].rejected = scored({3, 9, 27, 20, 14, 2}, 2, V);
  std::vector<int> a, b;  // a 20-token prompt and long answers: more than one logits chunk
  for (int t = 0; t < 20; t++) a.push_back(1 + 3 * t);
  b = a;
  for (int t = 0; t < 40; t++) a.push_back(3 + 7 * t), b.push_back(5 + 11 * t);
  p[3].chosen = scored(a, 20, V), p[3].rejected = scored(b, 20, V);
  p[4].chosen = scored({6, 11, 2}, 0, V);  // empty prompt, different first tokens: nothing to share
  p[4].rejected = scored({13, 11, 17, 2}, 0, V);
  for (size_t i = 0; i < p.size(); i++) p[i].ref_chosen = -10.0 - double(i), p[i].ref_rejected = -12.0 + double(i);
  return p;
}

// A prompt longer than half the sequence: packing it pays even beside an odd sequence padded to the packed length.
dpo::DpoPair long_prompt_pair(int V) {
  std::vector<int> a;
  for (int t = 0; t < 30; t++) a.push_back(2 + 5 * t);
  std::vector<int> b = a;
  a.insert(a.end(), {7, 8, 9, 2}), b.insert(b.end(), {10, 2});
  dpo::DpoPair p;
  p.chosen = scored(a, 30, V), p.rejected = scored(b, 30, V);
  p.ref_chosen = -7.0, p.ref_rejected = -6.0;
  return p;
}

std::vector<dpo::DpoPair> sharing_pairs(int V) {
  auto p = varied_pairs(V);
  p.pop_back();
  return p;
}

std::vector<dpo::ScoredSequence> interleaved(const std::vector<dpo::DpoPair>& pairs) {
  std::vector<dpo::ScoredSequence> s;
  for (const dpo::DpoPair& p : pairs) s.push_back(p.chosen), s.push_back(p.rejected);
  return s;
}

// What Model::logps hands make_scoring_layout: the sequences and each neighbouring two as a pair.
struct LayoutInput {
  std::vector<const dpo::ScoredSequence*> seqs;
  std::vector<std::pair<int, int>> twins;
};
// The kKeySkipInts skip bounds of a layout's row.
std::vector<int> skip_of(const dpo::ScoringLayout& lay, int row) {
  const auto at = lay.key_skip.begin() + ptrdiff_t(dpo::kKeySkipInts) * row;
  return std::vector<int>(at, at + dpo::kKeySkipInts);
}

LayoutInput layout_input(const std::vector<dpo::ScoredSequence>& batch) {
  LayoutInput in;
  for (const dpo::ScoredSequence& s : batch) in.seqs.push_back(&s);
  for (int k = 0; k + 1 < int(batch.size()); k += 2) in.twins.push_back({k, k + 1});
  return in;
}

void check_same_logps(const std::vector<dpo::SequenceLogp>& a, const std::vector<dpo::SequenceLogp>& b) {
  CHECK(a.size() == b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); i++) {
    CHECK(a[i].logp == b[i].logp);
    CHECK(a[i].logits_mean == b[i].logits_mean);
    CHECK(a[i].tokens == b[i].tokens);
    CHECK(a[i].token_logps == b[i].token_logps);
  }
}

DpoRun dpo_run(const TinyModel& tm, bool share, const std::vector<std::vector<dpo::DpoPair>>& batches,
               float dropout = 0.0f, dpo::QuantMode q = dpo::QuantMode::Nf4) {
  set_sharing(share);
  auto model = load_with_lora(tm, dropout, q);
  DpoRun r;
  dpo::DpoOptions o;
  o.grad_scale = 0.5f;
  for (const auto& pairs : batches) add_metrics(r, model->dpo_accumulate(pairs, 0, o));
  r.grads = model->lora_gradients();
  set_sharing(true);
  return r;
}

}  // namespace

TEST_CASE(scoring_layout_packs_pairs_around_their_shared_prompt) {
  const int V = 61;
  const auto pairs = varied_pairs(V);
  std::vector<const dpo::ScoredSequence*> seqs;
  std::vector<std::pair<int, int>> twins;
  for (const auto& p : pairs) seqs.push_back(&p.chosen), seqs.push_back(&p.rejected);
  for (int i = 0; i < 4; i++) twins.push_back({2 * i, 2 * i + 1});
  const std::vector<const dpo::ScoredSequence*> shared(seqs.begin(), seqs.begin() + 8);
  const dpo::ScoringLayout lay = dpo::make_scoring_layout(shared, twins, 0, V, 0, true);
  const int T = 60;  // the longest sequence
  CHECK(lay.packed() && lay.seq_T == T);
  CHECK(lay.rows.B == 4 && lay.rows.T == 2 * T - 3);  // the shortest shared prefix is 3 positions
  // Pair 1: the ids agree for 4 positions, so rejected position 4 is row T of the pair, at position 4, skipping the
  // chosen answer's rows [4, T).
  const int base = lay.rows.T, row = lay.row_of[size_t(3) * T + 4];
  CHECK(row == base + T);
  CHECK(lay.rows.pos[size_t(row)] == 4);
  CHECK(skip_of(lay, row) == std::vector<int>({4, T, 0, 0}));
  CHECK(lay.row_of[size_t(3) * T + 3] == lay.row_of[size_t(2) * T + 3]);
  // Pair 2: the chosen answer is a prefix of the rejected one; the rejected keeps its last position apart.
  CHECK(lay.row_of[size_t(5) * T + 2] == lay.row_of[size_t(4) * T + 2]);
  CHECK(lay.row_of[size_t(5) * T + 3] != lay.row_of[size_t(4) * T + 3]);
  // A row scored for two targets: its second entry comes after every first one.
  size_t entries = 0, firsts = 0;
  std::vector<int> seen(size_t(lay.decoder_rows()), 0);
  for (size_t e = 0; e < lay.entry_row.size(); e++) {
    if (seen[size_t(lay.entry_row[e])]++ == 0) CHECK(e == firsts++);
    entries++;
  }
  CHECK(firsts < entries);
  for (const auto& es : lay.seq_entries) {
    bool ascending = true;
    for (size_t i = 1; i < es.size(); i++)
      ascending = ascending && lay.entry_row[size_t(es[i - 1])] < lay.entry_row[size_t(es[i])];
    CHECK(ascending);
  }

  // An odd sequence out keeps a row of its own, as long as the packed one; beside four pairs with short prompts it
  // would cost more than sharing saves (the unshared layout then).
  const dpo::DpoPair lp = long_prompt_pair(V);
  const dpo::ScoringLayout with_odd =
      dpo::make_scoring_layout({&lp.chosen, &lp.rejected, seqs[8]}, {{0, 1}}, 0, V, 0, true);
  CHECK(with_odd.packed() && with_odd.rows.B == 2 && with_odd.rows.T == 2 * 34 - 30);
  CHECK(with_odd.row_of[size_t(2) * 34] == with_odd.rows.T && skip_of(with_odd, with_odd.rows.T)[1] == 0);
  std::vector<const dpo::ScoredSequence*> odd = shared;
  odd.push_back(seqs[8]);
  CHECK(!dpo::make_scoring_layout(odd, twins, 0, V, 0, true).packed());

  // Fallbacks give the padded batch row for row: sharing off; a pair that shares nothing; and a batch where packing
  // pads every row to nearly 2T while pair 4 shares nothing (more rows than the unshared layout).
  const dpo::PaddedBatch pb = dpo::make_padded_batch(seqs, 0, V, 0);
  std::vector<std::pair<int, int>> all = twins;
  all.push_back({8, 9});
  const std::vector<std::pair<int, int>> only_unshared = {{8, 9}};
  for (const std::vector<std::pair<int, int>>* cand : {const_cast<const decltype(all)*>(&all), &only_unshared})
    for (bool share : {false, true}) {
      const dpo::ScoringLayout u = dpo::make_scoring_layout(seqs, *cand, 0, V, 0, share);
      CHECK(!u.packed() && u.rows.B == pb.B && u.rows.T == pb.T && u.rows.ids == pb.ids && u.rows.pos == pb.pos);
      std::vector<int> rows;
      for (int m = 0; m < pb.B * pb.T; m++)
        if (pb.target[size_t(m)] >= 0) rows.push_back(m);
      CHECK(u.entry_row == rows);
    }
  const std::vector<std::pair<int, int>> overlapping = {{0, 1}, {1, 2}};
  CHECK_THROWS_CODE(dpo::make_scoring_layout(seqs, overlapping, 0, V, 0, true), dpo::ErrorCode::Internal, "pair 1");
}

TEST_CASE(packed_reference_logps_equal_unshared_bit_for_bit) {
  for (bool bf16 : {false, true}) {
    TinySpec s;
    s.bf16_values = bf16;
    // A context as long as the longest sequence: packed rows run past it, their positions never do.
    if (bf16) s.max_position = 60;
    TinyModel tm = write_tiny_model(s);
    auto model = load_with_lora(tm);
    auto seqs = interleaved(sharing_pairs(s.V));
    std::vector<std::vector<dpo::ScoredSequence>> batches = {seqs, interleaved(varied_pairs(s.V)),
                                                             interleaved(sample_pairs(s.V))};
    const dpo::DpoPair lp = long_prompt_pair(s.V);
    batches.push_back({lp.chosen, lp.rejected, varied_pairs(s.V)[4].chosen});  // an odd sequence out
    for (const auto& batch : batches)
      for (bool adapter : {false, true}) {
        set_sharing(false);
        const auto want = model->logps(batch, 0, nullptr, adapter);
        set_sharing(true);
        check_same_logps(model->logps(batch, 0, nullptr, adapter), want);
      }
  }
}

// Pairs of a chat template: every sequence starts with the same 2 tokens; the pairs' prompts go on differently; and a
// sequence on its own that starts alike.
std::vector<dpo::ScoredSequence> template_batch(int V) {
  return {scored({1, 2, 10, 11, 30, 2}, 4, V), scored({1, 2, 10, 11, 31, 5, 2}, 4, V), scored({1, 2, 20, 40, 2}, 3, V),
          scored({1, 2, 20, 41, 2}, 3, V), scored({1, 2, 50, 2}, 3, V)};
}

TEST_CASE(chained_layout_runs_a_call_in_one_row) {
  const int V = 61, pad = 0;
  const auto all = interleaved(varied_pairs(V));
  const auto [seqs, twins] = layout_input(all);
  // Pairs 0-2 share no first token: C = 0. Every sequence's last position predicts nothing and no other row sees it,
  // so it gets no row: segments of 5 + 7 - 3 = 9, 6 + 5 - 4 = 7 and 3 + 5 - 3 = 5 positions.
  const std::vector<const dpo::ScoredSequence*> three(seqs.begin(), seqs.begin() + 6);
  const std::vector<std::pair<int, int>> twins3(twins.begin(), twins.begin() + 3);
  const dpo::ScoringLayout lay = dpo::make_scoring_layout(three, twins3, pad, V, 0, true, false);
  const int T = 8;  // the longest sequence
  CHECK(lay.packed() && !lay.metric_rows && lay.seq_T == T && lay.rows.B == 1 && lay.rows.T == 21);
  CHECK(std::all_of(lay.rows.valid.begin(), lay.rows.valid.end(), [](uint8_t v) { return v == 1; }));
  // Pair 1 (rows 9..15): the chosen sequence's first 6 positions skip pair 0's rows; the rejected answer's position 4
  // skips those and the chosen answer's rows [13, 15).
  for (int t = 0; t < 6; t++)
    CHECK(lay.row_of[size_t(2) * T + t] == 9 + t && skip_of(lay, 9 + t) == std::vector<int>({0, 9, 0, 0}));
  CHECK(lay.row_of[size_t(2) * T + 6] == -1);  // the chosen sequence's last position: no row
  CHECK(lay.row_of[size_t(2) * T + 7] == -1);  // past the chosen sequence: no row
  const int row = lay.row_of[size_t(3) * T + 4];
  CHECK(row == 15 && lay.rows.pos[size_t(row)] == 4);
  CHECK(skip_of(lay, row) == std::vector<int>({0, 9, 13, 15}));
  CHECK(lay.row_of[size_t(3) * T + 5] == -1);
  CHECK(lay.row_of[size_t(3) * T + 3] == 9 + 3);  // the shared prompt
  // Pair 0's rejected answer restarts after its chosen sequence's 5 rows; pair 2's comes last, after a chosen answer
  // left with no rows of its own (its prompt is all but its last position): an empty skipped run.
  CHECK(lay.row_of[size_t(1) * T + 3] == 5 && skip_of(lay, 5) == std::vector<int>({0, 0, 3, 5}));
  CHECK(lay.row_of[size_t(5) * T + 4] == 20 && skip_of(lay, 20) == std::vector<int>({0, 16, 19, 19}));

  // A common start: C = 2 rows first, then [10 11 | 30 | 31 5], [20 | 40 | 41], [50] (no last positions).
  const auto tb = template_batch(V);
  const auto [tseqs, ttwins] = layout_input(tb);
  const dpo::ScoringLayout chain = dpo::make_scoring_layout(tseqs, ttwins, pad, V, 0, true, false);
  CHECK(chain.rows.B == 1 && chain.rows.T == 11);
  const std::vector<int> ids = {1, 2, 10, 11, 30, 31, 5, 20, 40, 41, 50};
  CHECK(chain.rows.ids == ids);
  const std::vector<int> pos = {0, 1, 2, 3, 4, 4, 5, 2, 3, 3, 2};
  CHECK(chain.rows.pos == pos);
  for (int s = 0; s < 5; s++) CHECK(chain.row_of[size_t(s) * 7] == 0 && chain.row_of[size_t(s) * 7 + 1] == 1);
  CHECK(skip_of(chain, 3) == std::vector<int>({2, 2, 0, 0}) && skip_of(chain, 6) == std::vector<int>({2, 2, 4, 5}));
  CHECK(skip_of(chain, 8) == std::vector<int>({2, 7, 0, 0}) && skip_of(chain, 9) == std::vector<int>({2, 7, 8, 9}));
  CHECK(chain.row_of[size_t(3) * 7 + 2] == 7 && skip_of(chain, 10) == std::vector<int>({2, 10, 0, 0}));

  // A pair that shares nothing chains as two sequences (no padding, no last positions); so does one sequence alone
  // (its last position dropped); sharing off gives the padded batch row for row.
  const std::vector<const dpo::ScoredSequence*> unshared = {seqs[8], seqs[9]};
  const dpo::ScoringLayout two = dpo::make_scoring_layout(unshared, {{0, 1}}, pad, V, 0, true, false);
  CHECK(two.packed() && two.rows.B == 1 && two.rows.T == 5 && skip_of(two, 2) == std::vector<int>({0, 2, 0, 0}));
  const std::vector<const dpo::ScoredSequence*> one = {seqs[9]};
  const dpo::ScoringLayout alone = dpo::make_scoring_layout(one, {}, pad, V, 0, true, false);
  const std::vector<int> alone_ids(seqs[9]->ids.begin(), seqs[9]->ids.end() - 1);
  CHECK(alone.rows.B == 1 && alone.rows.ids == alone_ids && alone.row_of.back() == -1);
  const dpo::PaddedBatch pb = dpo::make_padded_batch(three, pad, V, 0);
  const dpo::ScoringLayout u = dpo::make_scoring_layout(three, {}, pad, V, 0, false, false);
  CHECK(!u.packed() && u.rows.B == pb.B && u.rows.T == pb.T && u.rows.ids == pb.ids && u.rows.pos == pb.pos);
}

// Without the metric the pass runs one chained row and its last block at the scored rows only (last_block_rows.h): the
// same log-probs as the padded layout, packed or not, over Llama and Qwen3 (per-head q/k norms).
void check_tight_logps_equal_padded(const TinyModel& tm) {
  const int V = tm.spec.V;
  auto model = load_with_lora(tm);
  const auto pairs = varied_pairs(V);
  const dpo::DpoPair lp = long_prompt_pair(V);
  // Pairs of different lengths in one call; a long pair left unpacked beside them; an unshared pair; an odd
  // sequence out; the unshared fallback alone.
  std::vector<std::vector<dpo::ScoredSequence>> batches = {interleaved({pairs[0], pairs[1], pairs[2]}),
                                                           interleaved(sharing_pairs(V)),
                                                           interleaved(pairs),
                                                           interleaved(sample_pairs(V)),
                                                           {lp.chosen, lp.rejected, pairs[4].chosen},
                                                           interleaved({pairs[4]}),
                                                           template_batch(V)};
  for (size_t i = 0; i < batches.size(); i++) {
    const LayoutInput in = layout_input(batches[i]);
    // Every batch chains, so the comparison is of two different layouts.
    CHECK(dpo::make_scoring_layout(in.seqs, in.twins, 0, V, 0, true, false).packed());
    for (bool adapter : {false, true})
      for (bool share : {true, false}) {
        set_sharing(share);
        const auto want = model->logps(batches[i], 0, nullptr, adapter);
        const auto got = model->logps(batches[i], 0, nullptr, adapter, /*with_logits_mean=*/false);
        set_sharing(false);
        const auto unshared = model->logps(batches[i], 0, nullptr, adapter);
        set_sharing(true);
        CHECK(got.size() == want.size());
        for (size_t k = 0; k < got.size() && k < want.size(); k++) {
          CHECK(got[k].logp == want[k].logp && got[k].logp == unshared[k].logp);
          CHECK(got[k].tokens == want[k].tokens);
          CHECK(got[k].token_logps == want[k].token_logps);
          CHECK(std::isnan(got[k].logits_mean));
        }
      }
  }
}

TEST_CASE(tight_reference_logps_equal_padded_bit_for_bit) {
  for (bool bf16 : {false, true}) {
    TinySpec s;
    s.bf16_values = bf16;
    if (bf16) s.max_position = 60;
    check_tight_logps_equal_padded(write_tiny_model(s));
  }
  check_tight_logps_equal_padded(family_twin("qwen3-0.6b"));
}

TEST_CASE(packed_dpo_step_equals_unshared) {
  for (bool bf16 : {false, true}) {
    TinySpec s;
    s.bf16_values = bf16;
    TinyModel tm = write_tiny_model(s);
    const auto pairs = varied_pairs(s.V);
    std::vector<std::vector<dpo::DpoPair>> batches = {
        sharing_pairs(s.V), pairs, sample_pairs(s.V), {long_prompt_pair(s.V)}};
    for (const auto& p : pairs) batches.push_back({p});
    // Kept logits: none (recomputed: a run never crosses into a second entry of its row), one chunk, all.
    for (const std::string& budget :
         std::vector<std::string>{"0", std::to_string(dpo::kLogitsChunkRows * s.V * 4), ""}) {
      if (budget.empty()) unsetenv("DPO_KEPT_LOGITS_BYTES");
      else setenv("DPO_KEPT_LOGITS_BYTES", budget.c_str(), 1);
      for (dpo::QuantMode q : {dpo::QuantMode::None, dpo::QuantMode::Nf4}) {
        const DpoRun want = dpo_run(tm, false, batches, 0.0f, q), got = dpo_run(tm, true, batches, 0.0f, q);
        CHECK(got.metrics == want.metrics);
        if (q == dpo::QuantMode::None) check_close_grads(got, want, 2e-6f, 1e-6f);
        else check_close_grads(got, want, 1e-2f, 2e-3f);
      }
    }
    unsetenv("DPO_KEPT_LOGITS_BYTES");
  }
}

TEST_CASE(lora_dropout_keeps_the_unshared_layout) {
  // Dropout masks are drawn per decoder row: with dropout the switch must change nothing, bit for bit.
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  const std::vector<std::vector<dpo::DpoPair>> batches = {sharing_pairs(s.V)};
  const DpoRun want = dpo_run(tm, false, batches, 0.1f), got = dpo_run(tm, true, batches, 0.1f);
  CHECK(got.metrics == want.metrics);
  CHECK(got.grads.size() == want.grads.size());
  for (size_t i = 0; i < got.grads.size() && i < want.grads.size(); i++) CHECK(got.grads[i].data == want.grads[i].data);
}

TEST_CASE(logits_backward_keeps_both_gradients_of_a_row_scored_twice) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::Nf4, dpo::BackendChoice::Cpu});
  dpo::ModelImpl& im = model->impl();
  dpo::Backend& be = *im.backend;
  const int M = 40, C = s.C;
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> h(size_t(M) * C);
  for (float& v : h) v = nd(g);
  auto hidden = dpo::DeviceArray<float>::from_host(be, h);
  // Row 7 twice in the first 32-entry chunk, row 30 at its end and again at the start of the second.
  std::vector<int> rows = {7, 7}, targets = {3, 9};
  for (int i = 0; i < 30; i++)
    if (i != 7) rows.push_back(i), targets.push_back((5 * i) % s.V);
  for (int r : {30, 30, 39}) rows.push_back(r), targets.push_back((2 * r + int(rows.size())) % s.V);
  std::vector<float> dlogp(rows.size());
  for (size_t e = 0; e < dlogp.size(); e++) dlogp[e] = 0.25f + 0.01f * float(e);
  for (bool keep : {false, true}) {
    auto together = dpo::DeviceArray<float>::zeros(be, size_t(M) * C);
    dpo::LogitsStats st = dpo::logits_forward_entries(im.dev, be, hidden.get(), rows, targets, M, keep);
    dpo::logits_backward_entries(together.get(), im.dev, be, hidden.get(), st, dlogp);
    // One entry per call, in the same order: what the sum must be.
    auto apart = dpo::DeviceArray<float>::zeros(be, size_t(M) * C);
    for (size_t e = 0; e < rows.size(); e++) {
      dpo::LogitsStats one = dpo::logits_forward_entries(im.dev, be, hidden.get(), {rows[e]}, {targets[e]}, M, keep);
      CHECK(one.entry_logp[0] == st.entry_logp[e]);
      dpo::logits_backward_entries(apart.get(), im.dev, be, hidden.get(), one, {dlogp[e]});
    }
    CHECK(together.to_host() == apart.to_host());
  }
}

int main() { return run_all(); }
