// Recorded decoding (CUDA graphs, replayed per token) must give the hidden states of running every op, bit for bit,
// through a change of batch size. Checked on the guarded CPU backend, which records the way the CUDA backend does
// (ops stored, not run; memory freed meanwhile kept; no upload or download allowed while recording).
#include <cstdlib>
#include <vector>

#include "check.h"
#include "dpo/engine.h"
#include "model/decoder.h"
#include "model/model_impl.h"
#include "model/recorded_decoder.h"
#include "tiny_model.h"

using namespace dpo_test;

namespace {

// Hidden states of `steps` decoding steps after a prefill, as (per step) host vectors; record = use RecordedDecoder.
std::vector<std::vector<float>> decode(dpo::Model& model, bool record, int* replays) {
  dpo::ModelImpl& m = model.impl();
  dpo::Backend& be = *m.backend;
  const dpo::ModelConfig& c = m.weights.config;
  const int B = 2, T = 3;
  dpo::KvCache cache;
  cache.init(be, c.n_layers, B, 16, c.n_kv_heads * c.head_dim);
  const std::vector<int> ids = {1, 5, 9, 1, 7, 2}, pos = {0, 1, 2, 0, 1, 2};
  const std::vector<uint8_t> valid(6, 1);
  dpo::DeviceArray<float> hidden(be, size_t(B) * T * c.hidden), last(be, size_t(B) * c.hidden);
  dpo::decoder_forward(hidden.get(), m.dev, be, ids.data(), pos.data(), valid.data(), B, T, &cache, m.lora.get());
  dpo::RecordedDecoder rd(m.dev, be, cache, m.lora.get());
  std::vector<std::vector<float>> out;
  for (int s = 0; s < 6; s++) {
    // Two sequences for four steps, then only the second (the batch shrinks as in generation).
    const int M = s < 4 ? 2 : 1;
    const std::vector<int> seq = M == 2 ? std::vector<int>{0, 1} : std::vector<int>{1};
    std::vector<int> tok, p;
    for (int r = 0; r < M; r++) tok.push_back(3 + s + r), p.push_back(T + s);
    if (record) rd.step(last.get(), seq.data(), tok.data(), p.data(), M);
    else dpo::decoder_step(last.get(), m.dev, be, cache, seq.data(), tok.data(), p.data(), M, m.lora.get());
    std::vector<float> h(size_t(M) * c.hidden);
    last.download(h.data(), h.size());
    out.push_back(h);
  }
  *replays = rd.replays();
  return out;
}

}  // namespace

TEST_CASE(recorded_decode_steps_equal_running_every_op) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  for (bool nf4 : {false, true}) {
    setenv("DPO_BACKEND", "cpu-guarded", 1);
    auto model = dpo::Model::load(tm.dir, {nf4 ? dpo::QuantMode::Nf4 : dpo::QuantMode::None, dpo::BackendChoice::Cpu});
    unsetenv("DPO_BACKEND");
    dpo::LoraOptions lo;  // an adapter too: its temporaries are allocated and freed inside the recorded ops
    lo.targets = {"q_proj", "v_proj"};
    lo.r = 4;
    model->attach_lora(lo);
    auto t = model->lora_tensors();
    for (auto& x : t)
      for (size_t i = 0; i < x.data.size(); i++) x.data[i] = 0.01f * float(int(i % 7) - 3);
    model->set_lora_tensors(t);
    int replays = 0, none = 0;
    const auto eager = decode(*model, false, &none), recorded = decode(*model, true, &replays);
    CHECK(eager == recorded);
    // Steps 1 and 5 record (M = 2, then M = 1) and replay; the others replay what was recorded.
    CHECK(replays == 6);
  }
}

TEST_CASE(backends_without_recording_run_the_ops) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  int replays = -1;
  decode(*model, true, &replays);
  CHECK(replays == 0);
}

int main() { return run_all(); }
