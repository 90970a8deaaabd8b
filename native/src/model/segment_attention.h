// Attention over a chained training row (docs/performance.md#chained-training-steps): the decoder runs the rows of
// several micro-batches as one, [C common positions, then one segment per micro-batch row past C]; every row-wise op
// runs on all rows at once, while attention runs per segment on its gathered row [common rows, segment rows], which
// is exactly the micro-batch's own decoder row. So every attention output, and with it every hidden state, is the same
// bits as in the micro-batch's own call; the common rows' key and value gradients are the sum over the segments.
#pragma once
#include <cstdint>
#include <vector>

#include "core/device_array.h"
#include "dpo/backend.h"
#include "dpo/model_config.h"

namespace dpo {

// One segment: the C common rows and then its rows of the chained row (`rows`, in position order; anywhere past C)
// are one decoder row of its micro-batch's layout, whose positions, key flags and skipped keys (kKeySkipInts per row)
// it keeps.
struct AttentionSegment {
  std::vector<int> rows;       // its rows of the chained row, past the common ones
  std::vector<int> pos;        // (C + rows.size()) the gathered row's positions
  std::vector<uint8_t> valid;  // (C + rows.size())
  std::vector<int> key_skip;   // (C + rows.size()) * kKeySkipInts, or empty: no skipped keys
};

// The plan of a chained row: the common rows [0, C) and the segments, in order; together the segments' rows are
// [C, rows()) once each (a chained step puts every segment's padding rows after all the others: they have no gradient,
// so the backward's row-wise ops can stop before them, model/decoder.h TrainActs::backward_rows). Segment 0 also
// computes the common rows' attention outputs; the others use those rows only as keys.
class SegmentPlan {
 public:
  SegmentPlan(Backend& be, int common, const std::vector<AttentionSegment>& segments);

  int rows() const { return rows_; }
  // Floats of attention probabilities one layer keeps for the backward (every segment's, side by side).
  size_t probs_floats(int n_heads) const { return probs_per_head_ * size_t(n_heads); }

  // att (rows, NH*HD) = attention of q, k, v (rows, ...) per segment; probs (probs_floats) or null.
  void forward(Backend& be, const ModelConfig& c, float* att, float* probs, const float* q, const float* k,
               const float* v) const;
  // Writes dq, dk (may be null), dv (rows, ...) given datt and the forward's probs: every row, with the bits that
  // zero-filled outputs with each segment's gradients added would hold (no fill needed before).
  void backward(Backend& be, const ModelConfig& c, float* dq, float* dk, float* dv, const float* datt,
                const float* probs, const float* q, const float* k, const float* v) const;

 private:
  struct Seg {
    int queries = 0, keys = 0, first_query = 0;  // the gathered row's rows that ask: all (segment 0) or those past C
    DeviceArray<int> rows;                       // (keys) the chained row's row of each gathered row
    DeviceArray<int> pos, skip;                  // the gathered row's positions and skipped keys (skip may be empty)
    DeviceArray<uint8_t> valid;
    size_t probs_at = 0;  // where its probabilities start in a layer's, per head
  };
  // A segment's gathered queries (qs) and all of its keys and values (ks, vs), from the chained row's q, k, v.
  struct Gathered {
    DeviceArray<float> qs, ks, vs;
  };
  static Gathered gather(Backend& be, const ModelConfig& c, const Seg& g, const float* q, const float* k,
                         const float* v);

  int rows_ = 0;
  size_t probs_per_head_ = 0;
  std::vector<Seg> segs_;
};

}  // namespace dpo
