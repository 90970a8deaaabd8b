// Packing answer pairs around their shared prompt (docs/performance.md#prompt-prefix-sharing). Exactness: every
// per-row op is batch-invariant (docs/performance.md#batch-invariant-arithmetic) and RoPE runs at the row's position,
// so a packed row computes the same q, k, v as its unshared twin; attention_key_skip then shows it the same keys in
// the same order, so hidden states, log-probs and logit sums are the same bits.
#include "model/shared_prefix.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "dpo/errors.h"

namespace dpo {

int shared_prefix_length(const ScoredSequence& a, const ScoredSequence& b) {
  if (a.ids.empty() || b.ids.empty()) return 0;
  const size_t most = std::min(a.ids.size(), b.ids.size()) - 1;
  size_t n = 0;
  while (n < most && a.ids[n] == b.ids[n]) n++;
  return int(n);
}

namespace {

void add_entries(ScoringLayout& L, const PaddedBatch& pb) {
  const int N = pb.B, T = pb.T;
  std::vector<uint8_t> seen(size_t(L.decoder_rows()), 0);
  std::vector<int> first, second;  // (seq, t) flattened as s*T+t
  for (int s = 0; s < N; s++)
    for (int t = 0; t < T; t++) {
      const size_t i = size_t(s) * T + t;
      if (pb.target[i] < 0) continue;
      uint8_t& mark = seen[size_t(L.row_of[i])];
      (mark ? second : first).push_back(int(i));
      mark = 1;
    }
  L.seq_entries.assign(size_t(N), {});
  for (const std::vector<int>* list : {&first, &second})
    for (int i : *list) {
      const int s = i / T, e = int(L.entry_row.size());
      L.entry_row.push_back(L.row_of[size_t(i)]);
      L.entry_target.push_back(pb.target[size_t(i)]);
      L.entry_seq.push_back(s);
      L.seq_entries[size_t(s)].push_back(e);
    }
  // Second entries were appended after all first ones: restore position order within each sequence.
  for (std::vector<int>& es : L.seq_entries)
    std::sort(es.begin(), es.end(), [&](int x, int y) { return L.entry_row[size_t(x)] < L.entry_row[size_t(y)]; });
}

}  // namespace

bool prefix_sharing_enabled(const Backend& be) {
  if (!be.has_attention_key_skip()) return false;
  const char* env = std::getenv("DPO_PREFIX_SHARING");
  if (!env || !*env) return true;
  const std::string v(env);
  if (v == "0") return false;
  if (v == "1") return true;
  fail(ErrorCode::BadInput, "DPO_PREFIX_SHARING must be 0 or 1, got '" + v + "'");
}

namespace {

// Which pairs to pack, and the length every decoder row then has.
struct PackChoice {
  std::vector<uint8_t> pack;  // per pair
  int row_T = 0;
};

// Padded rows: every row is as long as the longest: packed rows take 2T - (shortest packed prefix), a sequence on its
// own T, or as much as a packed row when it shares the call with one. So pack the k pairs with the longest prefixes
// for the k that makes the fewest rows, and nothing unless that beats the unshared N x T.
PackChoice choose_padded(const std::vector<int>& prefix, int N, int T) {
  std::vector<int> order;
  for (size_t p = 0; p < prefix.size(); p++)
    if (prefix[p] > 0) order.push_back(int(p));
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return prefix[size_t(x)] > prefix[size_t(y)]; });
  PackChoice c{std::vector<uint8_t>(prefix.size(), 0), T};
  int64_t best_rows = int64_t(N) * T;
  int k_best = 0;
  for (int k = 1; k <= int(order.size()); k++) {
    const int row_T = std::max(2 * T - prefix[size_t(order[size_t(k - 1)])], N > 2 * k ? T : 0);
    if (int64_t(N - k) * row_T < best_rows) best_rows = int64_t(N - k) * row_T, c.row_T = row_T, k_best = k;
  }
  for (int k = 0; k < k_best; k++) c.pack[size_t(order[size_t(k)])] = 1;
  return c;
}

// Chained rows (no logits metric): every sequence of the call in one decoder row, [C common positions, then per
// segment: a pair's prompt past C, its first answer, its second answer; or a lone sequence past C]. C is the longest
// prefix that every sequence starts with (a chat template and system prompt), capped so that each pair keeps its own
// prompt rows and each sequence a row of its own. A segment's rows skip the keys of the segments before it; a second
// answer also skips its first answer. So each row sees the keys of its own sequence only, in position order.
struct Segment {
  int a = -1, b = -1;  // sequences (b = -1: a lone sequence)
  int P = 0;           // a pair's shared prompt length
};

int common_prefix(const std::vector<const ScoredSequence*>& seqs, const std::vector<Segment>& segs,
                  const std::vector<int>& len) {
  int C = len[size_t(segs[0].a)];
  for (const Segment& g : segs) {
    const ScoredSequence& s = *seqs[size_t(g.a)];
    C = std::min(C, g.b >= 0 ? g.P : len[size_t(g.a)] - 1);
    int n = 0;
    while (n < C && s.ids[size_t(n)] == seqs[size_t(segs[0].a)]->ids[size_t(n)]) n++;
    C = n;
  }
  return std::max(C, 0);
}

// Each pair that shares a prompt is one segment, in the given order; every other sequence one of its own after them.
std::vector<Segment> chain_segments(const std::vector<std::pair<int, int>>& pairs, const std::vector<int>& prefix,
                                    int N) {
  std::vector<Segment> segs;
  std::vector<uint8_t> in_pair(size_t(N), 0);
  for (size_t p = 0; p < pairs.size(); p++)
    if (prefix[p] > 0) {
      segs.push_back({pairs[p].first, pairs[p].second, prefix[p]});
      in_pair[size_t(pairs[p].first)] = in_pair[size_t(pairs[p].second)] = 1;
    }
  for (int s = 0; s < N; s++)
    if (!in_pair[size_t(s)]) segs.push_back({s, -1, 0});
  return segs;
}

// A segment's rows past the common C positions.
int segment_rows(const Segment& g, const std::vector<int>& len, int C) {
  return g.b >= 0 ? len[size_t(g.a)] + len[size_t(g.b)] - g.P - C : len[size_t(g.a)] - C;
}

int64_t chain_positions(const std::vector<Segment>& segs, const std::vector<int>& len, int C) {
  int64_t n = C;
  for (const Segment& g : segs) n += segment_rows(g, len, C);
  return n;
}

// len: per sequence, the positions that get rows ([0, len)); later ones keep row_of -1.
ScoringLayout chain_layout(ScoringLayout L, const PaddedBatch& pb, const std::vector<const ScoredSequence*>& seqs,
                           const std::vector<Segment>& segs, const std::vector<int>& len, int C) {
  const int T = pb.T;
  const int chain = int(chain_positions(segs, len, C));
  PaddedBatch& r = L.rows;
  r.B = 1;
  r.T = chain;
  const size_t n = size_t(chain);
  // Every row is some sequence's position (place() below): no padding to fill.
  r.ids.resize(n);
  r.pos.resize(n);
  r.valid.assign(n, 1);
  L.key_skip.resize(size_t(kKeySkipInts) * n);
  auto place = [&](int row, int s, int t, int skip0, int skip1, int skip2, int skip3) {
    const size_t from = size_t(s) * T + t;
    r.ids[size_t(row)] = pb.ids[from];
    r.pos[size_t(row)] = t;
    L.row_of[from] = row;
    int* k = L.key_skip.data() + size_t(kKeySkipInts) * row;
    k[0] = skip0, k[1] = skip1, k[2] = skip2, k[3] = skip3;
  };
  for (int t = 0; t < C; t++) {
    place(t, segs[0].a, t, 0, 0, 0, 0);
    for (size_t s = 0; s < seqs.size(); s++) L.row_of[s * T + t] = t;
  }
  int start = C;
  for (const Segment& g : segs) {
    for (int t = C; t < len[size_t(g.a)]; t++) place(start + t - C, g.a, t, C, start, 0, 0);
    if (g.b >= 0) {
      // The second answer's rows follow the first sequence's; they skip its answer, [start + P - C, second).
      const int second = start + len[size_t(g.a)] - C;
      for (int t = C; t < g.P; t++) L.row_of[size_t(g.b) * T + t] = start + t - C;
      for (int t = g.P; t < len[size_t(g.b)]; t++) place(second + t - g.P, g.b, t, C, start, start + g.P - C, second);
      start = second + len[size_t(g.b)] - g.P;
    } else {
      start += len[size_t(g.a)] - C;
    }
  }
  return L;
}

}  // namespace

ScoringLayout make_scoring_layout(const std::vector<const ScoredSequence*>& seqs,
                                  const std::vector<std::pair<int, int>>& pairs, int32_t pad_id, int vocab,
                                  int max_position, bool share, bool metric_rows) {
  PaddedBatch pb = make_padded_batch(seqs, pad_id, vocab, max_position);
  const int N = pb.B, T = pb.T;
  ScoringLayout L;
  L.seq_T = T;
  L.metric_rows = metric_rows;
  L.row_of.assign(size_t(N) * T, -1);

  std::vector<int> prefix(pairs.size(), 0), len(static_cast<size_t>(N));
  for (int s = 0; s < N; s++) len[size_t(s)] = int(seqs[size_t(s)]->ids.size());
  std::vector<uint8_t> paired(size_t(N), 0);
  for (size_t p = 0; share && p < pairs.size(); p++) {
    const auto [a, b] = pairs[p];
    if (a < 0 || b < 0 || a >= N || b >= N || a == b || paired[size_t(a)] || paired[size_t(b)])
      fail(ErrorCode::Internal, "make_scoring_layout: pair " + std::to_string(p) + " is not two unpaired sequences");
    paired[size_t(a)] = paired[size_t(b)] = 1;
    prefix[p] = shared_prefix_length(*seqs[size_t(a)], *seqs[size_t(b)]);
  }
  if (share && !metric_rows) {
    const std::vector<Segment> segs = chain_segments(pairs, prefix, N);
    const int C = common_prefix(seqs, segs, len);
    // A sequence's last position gets no row when it is not scored (it predicts nothing: an answer's EOS): no other
    // row of the chain sees it as a key (a second answer skips its first, a segment the ones before it), so nothing
    // reads it. Its earlier positions keep theirs (C and a pair's prompt end before it).
    std::vector<int> rows_len(len);
    for (int s = 0; s < N; s++)
      if (len[size_t(s)] > C && pb.target[size_t(s) * T + len[size_t(s)] - 1] < 0) rows_len[size_t(s)]--;
    if (chain_positions(segs, rows_len, C) < int64_t(N) * T) {  // worth it whenever it computes fewer positions
      L = chain_layout(std::move(L), pb, seqs, segs, rows_len, C);
      add_entries(L, pb);
      return L;
    }
  }
  // Padded rows (the metric's), or nothing packed.
  const PackChoice choice =
      metric_rows ? choose_padded(prefix, N, T) : PackChoice{std::vector<uint8_t>(pairs.size(), 0), T};
  std::vector<size_t> packs;  // the packed pairs, in their given order
  std::fill(paired.begin(), paired.end(), 0);
  for (size_t p = 0; p < pairs.size(); p++)
    if (choice.pack[p]) {
      packs.push_back(p);
      paired[size_t(pairs[p].first)] = paired[size_t(pairs[p].second)] = 1;
    }
  if (packs.empty()) {
    for (size_t i = 0; i < L.row_of.size(); i++) L.row_of[i] = int(i);
    L.rows = std::move(pb);
    add_entries(L, L.rows);
    return L;
  }

  PaddedBatch& r = L.rows;
  r.B = N - int(packs.size());
  r.T = choice.row_T;
  const size_t n = size_t(r.B) * r.T;
  r.ids.assign(n, pad_id);
  r.pos.assign(n, 0);  // rows past every sequence: position 0, no key, never scored
  r.valid.assign(n, 0);
  L.key_skip.assign(size_t(kKeySkipInts) * n, 0);
  auto place = [&](int row, int s, int t) {
    const size_t from = size_t(s) * T + t;
    r.ids[size_t(row)] = pb.ids[from];
    r.pos[size_t(row)] = t;
    r.valid[size_t(row)] = pb.valid[from];
    L.row_of[from] = row;
  };
  // Every position of a sequence's padded block gets a row (TRL's logits metric averages over all of them).
  int base = 0;
  for (size_t p : packs) {
    const auto [a, b] = pairs[p];
    const int P = prefix[p];
    for (int t = 0; t < T; t++) place(base + t, a, t);
    for (int t = 0; t < P; t++) L.row_of[size_t(b) * T + t] = base + t;
    for (int t = P; t < T; t++) {
      // The second answer sits after the first one's rows: it skips them and restarts at position P.
      const int row = base + T + (t - P);
      place(row, b, t);
      L.key_skip[size_t(kKeySkipInts) * row] = P;
      L.key_skip[size_t(kKeySkipInts) * row + 1] = T;
    }
    base += r.T;
  }
  for (int s = 0; s < N; s++) {
    if (paired[size_t(s)]) continue;
    for (int t = 0; t < T; t++) place(base + t, s, t);
    base += r.T;
  }
  add_entries(L, pb);
  return L;
}

}  // namespace dpo
