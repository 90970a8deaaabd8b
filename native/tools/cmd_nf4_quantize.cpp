// `dpo-tool nf4-quantize --in FILE --out FILE`: the engine's NF4 + double quantization of every floating tensor
// of a safetensors file, written in bitsandbytes' pre-quantized layout
// (docs/reference/nf4.md#pre-quantized-bnb-4bit-checkpoints), so the reference suite can put our bytes beside
// bitsandbytes.functional.quantize_4bit's (docs/reference-parity.md). The storage dtype is the tensor's own (F16, BF16
// or F32), as quantize_4bit keeps its input's dtype.
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "dpo/errors.h"
#include "io/safetensors.h"
#include "quant/nf4.h"

namespace dpo::tool {

namespace {

struct Quantized {
  std::string name;
  std::vector<int64_t> shape;
  Nf4Matrix m;
  std::string state;  // the quant_state JSON (bytes of a uint8 tensor)
};

const char* storage_name(DType d) { return d == DType::F16 ? "float16" : d == DType::BF16 ? "bfloat16" : "float32"; }

}  // namespace

int cmd_nf4_quantize(const Args& a) {
  const std::string in = get(a, "in"), out = get(a, "out");
  SafetensorsFile file(in);
  std::vector<Quantized> qs;
  for (const TensorView& t : file.tensors()) {
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
      throw EngineError(ErrorCode::BadInput, "tensor " + t.name + " in " + in + " is not F32, F16 or BF16");
    if (t.shape.empty() || t.numel() == 0)
      throw EngineError(ErrorCode::BadInput, "tensor " + t.name + " in " + in + " is empty or a scalar");
    // quantize_4bit flattens the tensor; rows x cols only matters for the recorded shape.
    const int64_t cols = t.shape.back(), rows = t.numel() / cols;
    std::vector<float> w(size_t(t.numel()));
    tensor_to_f32(t, w.data());  // exact: F16/BF16 widen to fp32 without rounding
    const Nf4StorageDType st = t.dtype == DType::F16    ? Nf4StorageDType::F16
                               : t.dtype == DType::BF16 ? Nf4StorageDType::BF16
                                                        : Nf4StorageDType::F32;
    Quantized q{t.name, t.shape, nf4_quantize(w.data(), rows, cols, st), ""};
    // QuantState.as_dict's key order; %.9g round-trips an fp32 offset exactly.
    std::string shape_json;
    for (size_t i = 0; i < t.shape.size(); i++) shape_json += (i ? ", " : "") + std::to_string(t.shape[i]);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": [%s], "
                  "\"nested_blocksize\": %d, \"nested_dtype\": \"float32\", \"nested_offset\": %.9g}",
                  kNf4BlockSize, storage_name(t.dtype), shape_json.c_str(), kNestedBlockSize,
                  double(q.m.absmax_offset));
    q.state = buf;
    qs.push_back(std::move(q));
  }
  std::vector<TensorToWrite> tensors;
  for (const Quantized& q : qs) {
    const int64_t blocks = q.m.blocks();
    tensors.push_back({q.name, DType::U8, {int64_t(q.m.packed.size()), 1}, q.m.packed.data(), q.m.packed.size()});
    tensors.push_back({q.name + ".absmax", DType::U8, {blocks}, q.m.absmax_q.data(), q.m.absmax_q.size()});
    tensors.push_back({q.name + ".nested_absmax",
                       DType::F32,
                       {int64_t(q.m.absmax2.size())},
                       q.m.absmax2.data(),
                       q.m.absmax2.size() * sizeof(float)});
    tensors.push_back({q.name + ".quant_map", DType::F32, {16}, kNf4Table, 16 * sizeof(float)});
    tensors.push_back({q.name + ".nested_quant_map", DType::F32, {256}, dynamic_map_signed(), 256 * sizeof(float)});
    tensors.push_back({q.name + ".quant_state.bitsandbytes__nf4",
                       DType::U8,
                       {int64_t(q.state.size())},
                       q.state.data(),
                       q.state.size()});
  }
  write_safetensors(out, tensors, {{"format", "pt"}});
  std::printf("quantized %zu tensor(s) into %s\n", qs.size(), out.c_str());
  return 0;
}

}  // namespace dpo::tool
