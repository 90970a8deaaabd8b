// Fuzz target `weights`: a checkpoint image loaded for the fixed tiny Llama (fuzz_checkpoint.h), once kept in fp32
// and once quantized to NF4 at load. Seeds hold plain F32 / BF16 and bitsandbytes pre-quantized checkpoints, so
// mutations reach the shape, dtype and quant_state checks. Either a clean E_BAD_MODEL naming the tensor's file, or
// weights of exactly the shapes the config implies.
#include <memory>
#include <string>

#include "fuzz_targets.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "fuzz_checkpoint.h"

namespace dpo::fuzz {
namespace {

void check_shapes(const ModelWeights& m, const ModelConfig& c) {
  const size_t C = size_t(c.hidden), V = size_t(c.vocab);
  // An NF4 load keeps an untied bf16 embedding as its bits (embed_bf16) instead of fp32 (embed): one of the two.
  require((m.embed.empty() ? m.embed_bf16.size() : m.embed.size()) == V * C, "embed has the wrong size");
  require(m.embed.empty() || m.embed_bf16.empty(), "embed is held both as fp32 and as bf16 bits");
  require(m.final_norm.size() == C, "model.norm has the wrong size");
  require(m.lm_head.size() == V * C, "lm_head has the wrong size");
  require(m.layers.size() == size_t(c.n_layers), "wrong number of layers");
  for (const LayerWeights& L : m.layers) {
    require(L.input_norm.size() == C && L.post_norm.size() == C, "a layer norm has the wrong size");
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
      if (l->quantized) {
        require(l->q.rows == l->out && l->q.cols == l->in, "an NF4 shape differs from its linear's: " + l->name);
        require(int64_t(l->q.absmax.size()) == l->q.blocks(), "an absmax cache has the wrong size: " + l->name);
      } else {
        require(l->w.size() == size_t(l->out) * size_t(l->in), "a weight has the wrong size: " + l->name);
      }
    }
  }
}

}  // namespace

void fuzz_weights(const uint8_t* data, size_t size) {
  use_one_thread();
  static const std::string kName = "fuzz/model.safetensors";
  const ModelConfig& c = tiny_config();
  for (bool quantize : {false, true}) {
    try {
      WeightSet ws(std::make_unique<SafetensorsFile>(kName, data, size));
      LoadStats stats;
      ModelWeights m = load_weights(c, ws, quantize, stats, nullptr);
      check_shapes(m, c);
    } catch (const EngineError& e) {
      expect_clean_refusal(e, ErrorCode::BadModel, "");
      const std::string msg = e.what();
      require(msg.find(kName) != std::string::npos || msg.find("tensor ") != std::string::npos,
              "the error names neither the file nor a tensor: " + msg.substr(0, 300));
    }
  }
}

void fuzz_quant_state(const uint8_t* data, size_t size) {
  use_one_thread();
  // The tiny model with every linear pre-quantized; the fuzzer's bytes replace q_proj's quant_state JSON.
  static const std::vector<OwnedTensor> base = tiny_tensors(DType::F32, true);
  std::vector<OwnedTensor> tensors = base;
  for (OwnedTensor& t : tensors)
    if (t.name == kQuantStateTensor) {
      t.bytes.assign(data, data + size);
      t.shape = {int64_t(size)};
    }
  const std::vector<uint8_t> image = image_of(tensors);
  try {
    WeightSet ws(std::make_unique<SafetensorsFile>("fuzz/model.safetensors", image.data(), image.size()));
    LoadStats stats;
    ModelWeights m = load_weights(tiny_config(), ws, true, stats, nullptr);
    check_shapes(m, tiny_config());
  } catch (const EngineError& e) {
    expect_clean_refusal(e, ErrorCode::BadModel, "model.layers.0.self_attn.q_proj.weight");
  }
}

}  // namespace dpo::fuzz
