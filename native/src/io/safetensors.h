// Memory-mapped safetensors reader: single files and sharded `model.safetensors.index.json` sets.
// The header is validated fully (offsets inside the data, sizes matching dtype x shape) before any tensor is used.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dpo {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType d);   // safetensors spelling: "F32", "BF16", ...
size_t dtype_size(DType d);

struct TensorView {
  std::string name;
  std::string file;            // path of the file that holds it
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mmap
  size_t nbytes = 0;

  int64_t numel() const;
};

// One mmapped file. Throws EngineError(BadModel) naming the file (and tensor) on a malformed header:
// truncated file, header length past end of file, bad JSON, unknown dtype, offsets outside the data,
// overlapping or size-mismatched tensors.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  // The same validation over an image already in memory (borrowed: `bytes` must outlive this object). `name`
  // stands in for the path in messages. The fuzzers use it so that the sanitizer sees reads past the buffer, which a
  // page-rounded mmap would hide.
  SafetensorsFile(const std::string& name, const uint8_t* bytes, size_t size);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  void parse(const uint8_t* base, size_t size);

  std::string path_;
  void* map_ = nullptr;  // the mmap this object owns, or null for a borrowed image
  size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All weight files of a model directory: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` (weight_map). Throws EngineError(BadModel) when neither exists,
// a shard is missing, or a tensor named by the index is not in its shard.
class WeightSet {
 public:
  explicit WeightSet(const std::string& model_dir);
  // A set made of one already-opened file (fuzzers and tests: a checkpoint image held in memory).
  explicit WeightSet(std::unique_ptr<SafetensorsFile> single);

  const TensorView* find(const std::string& name) const;     // nullptr when absent
  const TensorView& get(const std::string& name) const;      // throws BadModel "missing tensor NAME in DIR"
  std::vector<std::string> names() const;
  size_t total_bytes() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> by_name_;
};

// Converts a floating tensor (F32 / F16 / BF16 / F64) to fp32, element by element, into `out` (numel floats).
// Throws BadModel naming the tensor for non-floating dtypes.
void tensor_to_f32(const TensorView& t, float* out);
// Elements [begin, end) of a floating tensor as fp32, into out (end - begin floats), on the calling thread.
void tensor_slice_to_f32(const TensorView& t, int64_t begin, int64_t end, float* out);

// Writes a safetensors file (atomically: temp name + rename). Used by tests, tools and adapter export.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The same bytes in memory (fuzz seeds and harnesses).
std::vector<uint8_t> encode_safetensors(const std::vector<TensorToWrite>& tensors,
                                        const std::map<std::string, std::string>& metadata = {});

}  // namespace dpo
