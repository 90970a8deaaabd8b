// Per-segment attention of a chained training row (model/segment_attention.h): each segment's gathered row runs the
// same attention call as its micro-batch's own decoder row (its queries, all of its keys, its positions, key flags and
// skipped keys), and the results go back to the chained row's rows.
#include "model/segment_attention.h"

#include <string>

#include "dpo/errors.h"

namespace dpo {

SegmentPlan::SegmentPlan(Backend& be, int common, const std::vector<AttentionSegment>& segments) {
  size_t total = size_t(common);
  for (const AttentionSegment& a : segments) total += a.rows.size();
  std::vector<uint8_t> seen(total, 0);
  for (size_t s = 0; s < segments.size(); s++) {
    const AttentionSegment& a = segments[s];
    const int keys = common + int(a.rows.size());
    bool ok = !a.rows.empty() && int(a.pos.size()) == keys && int(a.valid.size()) == keys &&
              (a.key_skip.empty() || int(a.key_skip.size()) == keys * kKeySkipInts);
    for (const int r : a.rows) {
      ok = ok && r >= common && size_t(r) < total && !seen[size_t(r)];
      if (ok) seen[size_t(r)] = 1;
    }
    if (!ok) fail(ErrorCode::Internal, "SegmentPlan: segment " + std::to_string(s) + " does not cover rows of its own");
    Seg g;
    g.keys = keys;
    g.first_query = s == 0 ? 0 : common;
    g.queries = keys - g.first_query;
    std::vector<int> rows(static_cast<size_t>(keys));
    for (int t = 0; t < keys; t++) rows[size_t(t)] = t < common ? t : a.rows[size_t(t - common)];
    g.rows = DeviceArray<int>::from_host(be, rows);
    g.pos = DeviceArray<int>::from_host(be, a.pos);
    g.valid = DeviceArray<uint8_t>::from_host(be, a.valid);
    if (!a.key_skip.empty()) g.skip = DeviceArray<int>::from_host(be, a.key_skip);
    g.probs_at = probs_per_head_;
    probs_per_head_ += size_t(g.queries) * size_t(keys);
    segs_.push_back(std::move(g));
  }
  rows_ = int(total);
}

SegmentPlan::Gathered SegmentPlan::gather(Backend& be, const ModelConfig& c, const Seg& g, const float* q,
                                          const float* k, const float* v) {
  const int QD = c.n_heads * c.head_dim, KVD = c.n_kv_heads * c.head_dim;
  Gathered s{DeviceArray<float>(be, size_t(g.queries) * QD), DeviceArray<float>(be, size_t(g.keys) * KVD),
             DeviceArray<float>(be, size_t(g.keys) * KVD)};
  be.gather_rows(s.qs.get(), q, g.rows.get() + g.first_query, g.queries, QD);
  be.gather_rows(s.ks.get(), k, g.rows.get(), g.keys, KVD);
  be.gather_rows(s.vs.get(), v, g.rows.get(), g.keys, KVD);
  return s;
}

void SegmentPlan::forward(Backend& be, const ModelConfig& c, float* att, float* probs, const float* q, const float* k,
                          const float* v) const {
  const int QD = c.n_heads * c.head_dim;
  for (const Seg& g : segs_) {
    const Gathered s = gather(be, c, g, q, k, v);
    DeviceArray<float> out(be, size_t(g.queries) * QD);
    const int* asking = g.rows.get() + g.first_query;
    float* pr = probs ? probs + g.probs_at * size_t(c.n_heads) : nullptr;
    const int* pos = g.pos.get() + g.first_query;
    if (!g.skip.empty())
      be.attention_key_skip(out.get(), pr, s.qs.get(), s.ks.get(), s.vs.get(), pos, g.valid.get(),
                            g.skip.get() + size_t(kKeySkipInts) * g.first_query, 1, g.queries, g.keys, c.n_heads,
                            c.n_kv_heads, c.head_dim);
    else
      be.attention(out.get(), pr, s.qs.get(), s.ks.get(), s.vs.get(), pos, g.valid.get(), 1, g.queries, g.keys,
                   c.n_heads, c.n_kv_heads, c.head_dim);
    be.scatter_rows(att, asking, out.get(), g.queries, QD);
  }
}

namespace {
// dst rows `rows` += src (n rows of `width`): gathered, added, scattered back (rows distinct within one call).
void add_rows(Backend& be, float* dst, const int* rows, const float* src, int n, int width) {
  DeviceArray<float> t(be, size_t(n) * width);
  be.gather_rows(t.get(), dst, rows, n, width);
  be.add(t.get(), t.get(), src, int64_t(n) * width);
  be.scatter_rows(dst, rows, t.get(), n, width);
}
}  // namespace

// Every row of dq, dk and dv is stored by the first segment that has a gradient for it and added to by the later ones
// (only the common rows' keys and values have more than one). The per-segment gradients start from zeros and only
// accumulate, so none is -0, and storing one gives the bits of adding it to a zero-filled row: the same bits as
// zero-filled outputs with every segment added, without the fill, and without gathering rows only to add them to 0.
void SegmentPlan::backward(Backend& be, const ModelConfig& c, float* dq, float* dk, float* dv, const float* datt,
                           const float* probs, const float* q, const float* k, const float* v) const {
  const int QD = c.n_heads * c.head_dim, KVD = c.n_kv_heads * c.head_dim;
  if (segs_.empty()) {  // nothing asks: the (common) rows get no gradient
    be.fill_zero(dq, size_t(rows_) * QD * sizeof(float));
    if (dk) be.fill_zero(dk, size_t(rows_) * KVD * sizeof(float));
    be.fill_zero(dv, size_t(rows_) * KVD * sizeof(float));
    return;
  }
  for (const Seg& g : segs_) {
    const int* asking = g.rows.get() + g.first_query;
    const Gathered s = gather(be, c, g, q, k, v);
    DeviceArray<float> douts(be, size_t(g.queries) * QD);
    be.gather_rows(douts.get(), datt, asking, g.queries, QD);
    DeviceArray<float> dqs = DeviceArray<float>::zeros(be, size_t(g.queries) * QD),
                       dvs = DeviceArray<float>::zeros(be, size_t(g.keys) * KVD), dks;
    if (dk) dks = DeviceArray<float>::zeros(be, size_t(g.keys) * KVD);
    be.attention_backward(dqs.get(), dks.get(), dvs.get(), douts.get(), probs + g.probs_at * size_t(c.n_heads),
                          s.qs.get(), s.ks.get(), s.vs.get(), 1, g.queries, g.keys, c.n_heads, c.n_kv_heads,
                          c.head_dim);
    // Queries belong to one segment each: stored.
    be.scatter_rows(dq, asking, dqs.get(), g.queries, QD);
    // Keys and values: segment 0 (first_query 0) stores all of its rows, the common ones first; a later one (its
    // first_query is the common count) adds to the common rows, in segment order, and stores its own.
    const int common = g.first_query;
    auto keys_out = [&](float* d, const DeviceArray<float>& ds) {
      if (common > 0) add_rows(be, d, g.rows.get(), ds.get(), common, KVD);
      be.scatter_rows(d, g.rows.get() + common, ds.get() + size_t(common) * KVD, g.keys - common, KVD);
    };
    if (dk) keys_out(dk, dks);
    keys_out(dv, dvs);
  }
}

}  // namespace dpo
