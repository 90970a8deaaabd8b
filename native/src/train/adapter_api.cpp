// Model's adapter management: attach a fresh LoRA, detach it, and move its tensors in and out in PEFT naming.
#include <map>

#include "model/model_impl.h"

namespace dpo {

void Model::attach_lora(const LoraOptions& o) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  LoraConfig c;
  c.targets = o.targets;
  c.r = o.r;
  c.alpha = o.alpha;
  c.dropout = o.dropout;
  c.seed = o.seed;
  impl_->lora = make_lora(impl_->weights, c, *impl_->backend);
}

void Model::detach_lora() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->lora.reset();
}

bool Model::has_lora() const { return impl_->lora != nullptr; }

namespace {

// Every adapted (layer, kind) in PEFT order, as two named tensors: a(w) for lora_A, b(w) for lora_B.
template <typename GetA, typename GetB>
std::vector<LoraTensor> adapter_tensors(const LoraAdapter* a, GetA get_a, GetB get_b) {
  std::vector<LoraTensor> out;
  if (!a) return out;
  for (size_t l = 0; l < a->layers.size(); l++)
    for (int k = 0; k < kNumLinear; k++) {
      const LoraWeights* w = a->at(int(l), k);
      if (!w) continue;
      out.push_back({LoraAdapter::tensor_name(int(l), k, true), {w->r, w->in}, get_a(*w)});
      out.push_back({LoraAdapter::tensor_name(int(l), k, false), {w->out, w->r}, get_b(*w)});
    }
  return out;
}

}  // namespace

std::vector<LoraTensor> Model::lora_tensors() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (LoraAdapter* a = impl_->lora.get())  // the host copies are refreshed lazily after optimizer steps
    for (auto& layer : a->layers)
      for (auto& w : layer)
        if (w) w->pull_host();
  return adapter_tensors(
      impl_->lora.get(), [](const LoraWeights& w) { return w.A; }, [](const LoraWeights& w) { return w.B; });
}

std::vector<LoraTensor> Model::lora_gradients() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return adapter_tensors(
      impl_->lora.get(), [](const LoraWeights& w) { return w.dA.to_host(); },
      [](const LoraWeights& w) { return w.dB.to_host(); });
}

void Model::set_lora_tensors(const std::vector<LoraTensor>& tensors) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  LoraAdapter* a = impl_->lora.get();
  if (!a) fail(ErrorCode::BadInput, "no LoRA adapter is attached: attach one before loading its tensors");
  std::map<std::string, const LoraTensor*> by_name;
  for (const LoraTensor& t : tensors) by_name[t.name] = &t;
  // Check everything first so a bad adapter changes nothing.
  size_t expected = 0;
  for (size_t l = 0; l < a->layers.size(); l++)
    for (int k = 0; k < kNumLinear; k++) {
      const LoraWeights* w = a->at(int(l), k);
      if (!w) continue;
      for (bool is_a : {true, false}) {
        const std::string name = LoraAdapter::tensor_name(int(l), k, is_a);
        auto it = by_name.find(name);
        if (it == by_name.end()) fail(ErrorCode::BadInput, "adapter tensor " + name + " is missing");
        const std::vector<int64_t> shape =
            is_a ? std::vector<int64_t>{w->r, w->in} : std::vector<int64_t>{w->out, w->r};
        if (it->second->shape != shape || it->second->data.size() != size_t(shape[0] * shape[1]))
          fail(ErrorCode::BadInput, "adapter tensor " + name + " has the wrong shape for this model and rank");
        expected++;
      }
    }
  if (tensors.size() != expected)
    for (const LoraTensor& t : tensors)
      if (t.name.find("lora_") != std::string::npos && by_name.count(t.name)) {
        bool known = false;
        for (size_t l = 0; l < a->layers.size() && !known; l++)
          for (int k = 0; k < kNumLinear && !known; k++)
            known = a->at(int(l), k) && (t.name == LoraAdapter::tensor_name(int(l), k, true) ||
                                         t.name == LoraAdapter::tensor_name(int(l), k, false));
        if (!known) fail(ErrorCode::BadInput, "adapter tensor " + t.name + " does not belong to the attached targets");
      }
  for (size_t l = 0; l < a->layers.size(); l++)
    for (int k = 0; k < kNumLinear; k++) {
      LoraWeights* w = a->at(int(l), k);
      if (!w) continue;
      w->A = by_name[LoraAdapter::tensor_name(int(l), k, true)]->data;
      w->B = by_name[LoraAdapter::tensor_name(int(l), k, false)]->data;
      w->sync(*impl_->backend);
    }
}

}  // namespace dpo
