// Activation checkpointing: recomputing each block in the backward (what 7B shapes on a GPU need) must give the same
// LoRA and full-parameter gradients, bit for bit, as keeping every activation, dropout masks included.
#include <cstdlib>
#include <vector>

#include "check.h"
#include "dpo/engine.h"
#include "model/decoder.h"
#include "model/model_impl.h"
#include "random_lora_b.h"
#include "scored_pairs.h"
#include "tiny_model.h"

using namespace dpo_test;

namespace {

// LoRA gradients of two DPO micro-batches (the dropout generator advances between them) under DPO_RECOMPUTE=mode.
std::vector<dpo::LoraTensor> dpo_gradients(const TinyModel& tm, const char* mode, bool nf4) {
  setenv("DPO_RECOMPUTE", mode, 1);
  auto model = dpo::Model::load(tm.dir, {nf4 ? dpo::QuantMode::Nf4 : dpo::QuantMode::None, dpo::BackendChoice::Cpu});
  dpo::LoraOptions lo;
  lo.targets = {"q_proj", "v_proj", "up_proj", "down_proj"};
  lo.r = 4;
  lo.dropout = 0.2f;
  model->attach_lora(lo);
  randomize_lora_b(*model, 3);
  const int V = tm.spec.V;
  model->dpo_accumulate(sample_pairs(V), 2, {});
  model->dpo_accumulate(sample_pairs(V), 2, {});
  unsetenv("DPO_RECOMPUTE");
  return model->lora_gradients();
}

}  // namespace

TEST_CASE(recomputed_blocks_give_the_same_lora_gradients) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  for (bool nf4 : {false, true}) {
    auto kept = dpo_gradients(tm, "never", nf4), recomputed = dpo_gradients(tm, "always", nf4);
    CHECK(kept.size() == recomputed.size());
    bool nonzero = false;
    for (size_t i = 0; i < kept.size(); i++) {
      CHECK(kept[i].data == recomputed[i].data);
      for (float v : kept[i].data) nonzero = nonzero || v != 0.0f;
    }
    CHECK(nonzero);
  }
}

TEST_CASE(recomputed_blocks_give_the_same_full_gradients) {
  TinySpec s;
  TinyModel tm = write_tiny_model(s);
  std::vector<std::vector<float>> got[2];
  const char* modes[2] = {"never", "always"};
  for (int i = 0; i < 2; i++) {
    setenv("DPO_RECOMPUTE", modes[i], 1);
    auto model = dpo::Model::load(tm.dir, {dpo::QuantMode::None, dpo::BackendChoice::Cpu});
    model->sft_accumulate({scored({1, 5, 9, 33, 12, 2}, 2, s.V), scored({1, 7, 50, 2}, 1, s.V)}, 2, 1.0f);
    dpo::FullGrads& g = *model->impl().full;
    got[i] = {g.embed.to_host(), g.final_norm.to_host(), g.layers[0].input_norm.to_host(),
              g.layers[1].lin[3].dw.to_host(), g.layers[0].lin[6].dw.to_host()};
    unsetenv("DPO_RECOMPUTE");
  }
  CHECK(got[0] == got[1]);
}

TEST_CASE(activation_budget_switches_to_recompute_at_7b_shapes) {
  // Breeze-7B at 2 x 256 tokens keeps ~170 MB per block: 32 blocks are far over the 1 GiB budget.
  dpo::ModelConfig c;
  c.hidden = 4096, c.intermediate = 14336, c.n_heads = 32, c.n_kv_heads = 8, c.head_dim = 128, c.n_layers = 32;
  const uint64_t per_block = dpo::block_activation_bytes(c, 2, 256);
  std::printf("  Breeze-7B shape, 2 x 256 tokens: %.0f MB per block kept\n", per_block / 1e6);
  CHECK(per_block > 100'000'000 && per_block < 300'000'000);
}

int main() { return run_all(); }
