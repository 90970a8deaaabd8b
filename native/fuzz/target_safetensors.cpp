// Fuzz target `safetensors`: a whole safetensors file image. Either a clean E_BAD_MODEL naming the file, or every
// tensor lies inside the data section with nbytes = numel x dtype size, and its bytes (and its fp32 conversion)
// can be read; the sanitizer sees any read past the image because the image is the fuzzer's own buffer.
#include <memory>
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace dpo::fuzz {

void fuzz_safetensors(const uint8_t* data, size_t size) {
  use_one_thread();
  static const std::string kName = "fuzz/model.safetensors";
  std::unique_ptr<SafetensorsFile> file;
  try {
    file = std::make_unique<SafetensorsFile>(kName, data, size);
  } catch (const EngineError& e) {
    expect_clean_refusal(e, ErrorCode::BadModel, kName);
    return;
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  const uint8_t* begin = data + 8 + header_len;
  const uint8_t* end = data + size;
  unsigned checksum = 0;
  for (const TensorView& t : file->tensors()) {
    require(file->find(t.name) == &t, "a tensor cannot be found by its name: " + json::escape(t.name));
    require(t.data >= begin && t.data <= end && t.nbytes <= size_t(end - t.data),
            "a tensor lies outside the data section: " + json::escape(t.name));
    require(uint64_t(t.numel()) * dtype_size(t.dtype) == t.nbytes,
            "a tensor has nbytes != numel x dtype size: " + json::escape(t.name));
    for (size_t i = 0; i < t.nbytes; i++) checksum += t.data[i];
    const bool floating =
        t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64;
    if (floating) {
      std::vector<float> out(size_t(t.numel()));
      tensor_to_f32(t, out.data());
    } else {
      float sink = 0;
      try {
        tensor_to_f32(t, &sink);  // must refuse a non-floating dtype before writing anything
        violation("tensor_to_f32 accepted a non-floating dtype: " + std::string(dtype_name(t.dtype)));
      } catch (const EngineError& e) {
        expect_clean_refusal(e, ErrorCode::BadModel, json::escape(t.name));  // names reach messages escaped
      }
    }
  }
  static volatile unsigned keep;  // the sum is stored, so the reads above cannot be optimised away
  keep = checksum;
  WeightSet set(std::move(file));
  require(set.names().size() <= size, "more tensors than bytes");
  require(set.total_bytes() <= size, "tensors hold more bytes than the file");
}

}  // namespace dpo::fuzz
