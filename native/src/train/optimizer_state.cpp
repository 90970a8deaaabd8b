// Export and import of a LoRA run's training state (dpo/training_state.h, docs/resume.md): per parameter the
// optimizer's moments (fp32, or bnb's 8-bit codes and block scales) and step counter, plus the dropout generator.
// Every array crosses with the backend's download/upload, so a CUDA run saves its GPU-resident state the same way.
#include <map>
#include <sstream>
#include <string>

#include "dpo/errors.h"
#include "model/model_impl.h"
#include "train/device_adamw.h"

namespace dpo {

namespace {

// The layout each optimizer keeps for a tensor of n elements (bnb: 8-bit only from kAdam8bitMinSize on).
OptimizerLayout expected_layout(bool eight_bit, int64_t n) {
  if (!eight_bit) return OptimizerLayout::AdamW;
  return n >= kAdam8bitMinSize ? OptimizerLayout::Bnb8Blockwise : OptimizerLayout::Bnb32;
}

template <typename T>
void check_size(const OptimizerTensorState& s, const std::vector<T>& v, int64_t want, const char* what) {
  if (int64_t(v.size()) != want)
    fail(ErrorCode::BadInput, "optimizer state of " + s.name + ": " + what + " has " + std::to_string(v.size()) +
                                  " values, the " + optimizer_layout_name(s.layout) + " state needs " +
                                  std::to_string(want));
}

}  // namespace

void check_optimizer_state(const OptimizerTensorState& s, bool eight_bit, int64_t numel) {
  const OptimizerLayout want = expected_layout(eight_bit, numel);
  if (s.numel != numel)
    fail(ErrorCode::BadInput, "optimizer state of " + s.name + " is for " + std::to_string(s.numel) +
                                  " elements, the parameter has " + std::to_string(numel));
  if (s.layout != want)
    fail(ErrorCode::BadInput, "optimizer state of " + s.name + " has layout " + optimizer_layout_name(s.layout) + ", " +
                                  (eight_bit ? "the 8-bit optimizer" : "fp32 AdamW") + " keeps " +
                                  optimizer_layout_name(want) + " for it");
  if (s.step < 0) fail(ErrorCode::BadInput, "optimizer state of " + s.name + " has a negative step counter");
  if (want == OptimizerLayout::Bnb8Blockwise) {
    const int64_t blocks = (numel + kAdam8bitBlockSize - 1) / kAdam8bitBlockSize;
    check_size(s, s.state1, numel, "state1");
    check_size(s, s.state2, numel, "state2");
    check_size(s, s.absmax1, blocks, "absmax1");
    check_size(s, s.absmax2, blocks, "absmax2");
    check_size(s, s.m, 0, "m");
    check_size(s, s.v, 0, "v");
  } else {
    check_size(s, s.m, numel, "m");
    check_size(s, s.v, numel, "v");
    check_size(s, s.state1, 0, "state1");
    check_size(s, s.state2, 0, "state2");
    check_size(s, s.absmax1, 0, "absmax1");
    check_size(s, s.absmax2, 0, "absmax2");
  }
}

void DeviceAdamW::save_state(OptimizerTensorState& out) const {
  out.layout = OptimizerLayout::AdamW;
  out.step = t_;
  out.numel = n_;
  out.m = m_.to_host();
  out.v = v_.to_host();
}

void DeviceAdamW::load_state(const OptimizerTensorState& in) {
  check_optimizer_state(in, false, n_);
  m_.upload(in.m);
  v_.upload(in.v);
  t_ = in.step;
}

void DeviceAdamW8bit::save_state(OptimizerTensorState& out) const {
  out.step = t_;
  out.numel = n_;
  if (blockwise()) {
    out.layout = OptimizerLayout::Bnb8Blockwise;
    out.state1 = state1_.to_host();
    out.state2 = state2_.to_host();
    out.absmax1 = absmax1_.to_host();
    out.absmax2 = absmax2_.to_host();
  } else {
    out.layout = OptimizerLayout::Bnb32;
    out.m = m32_.to_host();
    out.v = v32_.to_host();
  }
}

void DeviceAdamW8bit::load_state(const OptimizerTensorState& in) {
  check_optimizer_state(in, true, n_);
  if (blockwise()) {
    state1_.upload(in.state1);
    state2_.upload(in.state2);
    absmax1_.upload(in.absmax1);
    absmax2_.upload(in.absmax2);
  } else {
    m32_.upload(in.m);
    v32_.upload(in.v);
  }
  t_ = in.step;
}

namespace {

// Every adapted matrix of `a` in lora_tensors() order: (PEFT name, weights, is A).
struct AdaptedMatrix {
  std::string name;
  LoraWeights* w;
  bool is_a;
  int64_t numel() const { return int64_t(is_a ? w->A.size() : w->B.size()); }
  std::unique_ptr<DeviceOptimizer>& opt() const { return is_a ? w->optA : w->optB; }
};

std::vector<AdaptedMatrix> adapted_matrices(LoraAdapter& a) {
  std::vector<AdaptedMatrix> out;
  for (size_t l = 0; l < a.layers.size(); l++)
    for (int k = 0; k < kNumLinear; k++)
      if (LoraWeights* w = a.at(int(l), k))
        for (bool is_a : {true, false}) out.push_back({LoraAdapter::tensor_name(int(l), k, is_a), w, is_a});
  return out;
}

LoraAdapter& attached(ModelImpl& impl, const char* what) {
  if (!impl.lora) fail(ErrorCode::BadInput, std::string(what) + " needs a LoRA adapter: attach one first");
  return *impl.lora;
}

}  // namespace

TrainingState Model::export_training_state() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  LoraAdapter& a = attached(*impl_, "export_training_state");
  TrainingState st;
  std::ostringstream rng;
  rng << a.dropout_rng_at_step;
  st.dropout_rng = rng.str();
  const std::vector<AdaptedMatrix> mats = adapted_matrices(a);
  // Optimizers are made on the first step; before it there is no state to save.
  if (mats.empty() || !mats.front().opt()) return st;
  st.optimizer = a.optimizer_8bit ? TrainingState::Optimizer::AdamW8bit : TrainingState::Optimizer::AdamW;
  for (const AdaptedMatrix& m : mats) {
    OptimizerTensorState t;
    t.name = m.name;
    m.opt()->save_state(t);
    st.tensors.push_back(std::move(t));
  }
  return st;
}

void Model::import_training_state(const TrainingState& st) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  LoraAdapter& a = attached(*impl_, "import_training_state");
  Backend& be = *impl_->backend;

  // Check everything before changing anything: a state that does not fit leaves the adapter as it was.
  std::mt19937 rng;
  std::istringstream in(st.dropout_rng);
  in >> rng;
  if (in.fail()) fail(ErrorCode::BadInput, "the dropout generator state is not a std::mt19937 state");
  const std::vector<AdaptedMatrix> mats = adapted_matrices(a);
  const bool none = st.optimizer == TrainingState::Optimizer::None;
  const bool eight_bit = st.optimizer == TrainingState::Optimizer::AdamW8bit;
  std::map<std::string, const OptimizerTensorState*> by_name;
  for (const OptimizerTensorState& t : st.tensors) {
    if (!by_name.emplace(t.name, &t).second)
      fail(ErrorCode::BadInput, "optimizer state of " + t.name + " appears twice");
  }
  if (none && !st.tensors.empty()) fail(ErrorCode::BadInput, "optimizer state without an optimizer kind");
  if (!none) {
    for (const AdaptedMatrix& m : mats) {
      auto it = by_name.find(m.name);
      if (it == by_name.end()) fail(ErrorCode::BadInput, "optimizer state of " + m.name + " is missing");
      check_optimizer_state(*it->second, eight_bit, m.numel());
    }
    if (by_name.size() != mats.size())
      for (const OptimizerTensorState& t : st.tensors) {
        bool known = false;
        for (const AdaptedMatrix& m : mats) known = known || m.name == t.name;
        if (!known)
          fail(ErrorCode::BadInput, "optimizer state of " + t.name + " does not belong to the attached adapter");
      }
  }

  a.optimizer_8bit = eight_bit;
  for (const AdaptedMatrix& m : mats) {
    m.opt().reset();
    if (!none) {
      m.opt() = eight_bit ? make_device_adamw_8bit(be, m.numel()) : make_device_adamw(be, m.numel());
      m.opt()->load_state(*by_name.at(m.name));
    }
    (m.is_a ? m.w->dA : m.w->dB).zero();
  }
  a.dropout_rng = rng;
  a.dropout_rng_at_step = rng;
}

}  // namespace dpo
