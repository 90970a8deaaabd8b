// Decoding steps replayed from a recording (CUDA graphs) where the backend can record, run op by op otherwise.
// A 7B decode step is ~700 small kernels; launching them one at a time costs about what running them does, so the
// step's ops are recorded once per batch size M and replayed for every token with new inputs at the same addresses.
// Recording is dropped when M changes (a sequence finished); any failure to record falls back to running the ops.
#pragma once
#include <memory>

#include "model/decoder.h"

namespace dpo {

class RecordedDecoder {
 public:
  RecordedDecoder(const DeviceWeights& w, Backend& be, KvCache& cache, const LoraAdapter* lora)
      : w_(w), be_(be), cache_(cache), lora_(lora) {}
  RecordedDecoder(const RecordedDecoder&) = delete;
  RecordedDecoder& operator=(const RecordedDecoder&) = delete;

  // As decoder_step (same results, bit for bit): hidden_out (M,C) for row r = sequence seq[r], token ids[r] at pos[r].
  void step(float* hidden_out, const int* seq, const int* ids, const int* pos, int M);
  // How many steps ran from a recording (tests, benchmarks).
  int replays() const { return replays_; }

 private:
  void run_ops(float* hidden_out) { decode_step_body(hidden_out, w_, be_, cache_, in_, lora_); }

  const DeviceWeights& w_;
  Backend& be_;
  KvCache& cache_;
  const LoraAdapter* lora_;
  DecodeInputs in_;
  std::shared_ptr<void> recording_;  // for in_.M and recorded_out_
  float* recorded_out_ = nullptr;
  RopeTable recorded_rope_;  // the table the recording was made with
  bool can_record_ = true;
  int replays_ = 0;
};

}  // namespace dpo
