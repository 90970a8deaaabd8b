// RecordedDecoder: record once per batch size, replay per token, fall back to running the ops.
#include "model/recorded_decoder.h"

namespace dpo {

void RecordedDecoder::step(float* hidden_out, const int* seq, const int* ids, const int* pos, int M) {
  // A recording refers to in_'s buffers and to hidden_out: it goes before set() may reallocate them.
  if (M != in_.M || hidden_out != recorded_out_) recording_.reset();
  in_.set(w_, be_, cache_, seq, ids, pos, M);
  // The RoPE table is recorded by value; dynamic scaling changes it once positions pass the model's context.
  if (recording_ && !(in_.rope == recorded_rope_)) recording_.reset();
  if (!can_record_) return run_ops(hidden_out);
  if (!recording_) {
    if (!be_.begin_capture()) {
      can_record_ = false;
      return run_ops(hidden_out);
    }
    try {
      run_ops(hidden_out);  // recorded, not run
    } catch (...) {
      // Whatever went wrong while recording, running the ops directly either works or reports the real error.
      be_.abort_capture();
      can_record_ = false;
      return run_ops(hidden_out);
    }
    recording_ = be_.end_capture();
    if (!recording_) {
      can_record_ = false;
      return run_ops(hidden_out);
    }
    recorded_out_ = hidden_out;
    recorded_rope_ = in_.rope;
  }
  be_.replay(recording_);
  replays_++;
}

}  // namespace dpo
