// safetensors reading (mmap + full header validation), the sharded WeightSet, fp32 conversion and the writer.
// Format: u64 little-endian header length N, N bytes of JSON header, then the data section the offsets index.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/half.h"
#include "cpu/thread_pool.h"
#include "dpo/errors.h"
#include "io/json.h"
#include "io/text_file.h"

namespace dpo {

// ---- dtypes -----------------------------------------------------------------------------------------

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16: return 2;
    case DType::I8:
    case DType::U8:
    case DType::BOOL: return 1;
  }
  return 0;
}

static bool parse_dtype(const std::string& s, DType* out) {
  static const DType all[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                              DType::I32, DType::I16, DType::I8,   DType::U8,  DType::BOOL};
  for (DType d : all)
    if (s == dtype_name(d)) {
      *out = d;
      return true;
    }
  return false;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

static std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

static std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

static bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// ---- SafetensorsFile --------------------------------------------------------------------------------

namespace {

// A non-negative integer that a double holds exactly (2^53); anything larger cannot index a real file anyway.
bool is_count(const json::Value& v) {
  if (!v.is_number()) return false;
  double d = v.as_number();
  return d >= 0 && d <= 9007199254740992.0 && d == double(int64_t(d));
}

// Reads one header entry into `t` (offsets still relative to the data section), or throws naming the tensor.
void parse_entry(const std::string& path, const std::string& name, const json::Value& entry, TensorView& t,
                 uint64_t& begin, uint64_t& end) {
  auto bad = [&](const std::string& what) {
    fail(ErrorCode::BadModel, path + ": tensor " + json::escape(name) + ": " + what);
  };
  const json::Value* dtype = entry.find("dtype");
  const json::Value* shape = entry.find("shape");
  const json::Value* offsets = entry.find("data_offsets");
  if (!entry.is_object() || !dtype || !shape || !offsets) bad("header entry needs dtype, shape and data_offsets");

  if (!dtype->is_string() || !parse_dtype(dtype->as_string(), &t.dtype))
    bad("unknown dtype " +
        (dtype->is_string() ? "'" + json::escape(dtype->as_string()) + "'" : std::string("(not a string)")));

  if (!shape->is_array()) bad("shape is not an array");
  for (const json::Value& d : shape->as_array()) {
    if (!is_count(d)) bad("shape entries must be non-negative integers");
    t.shape.push_back(d.as_int());
  }

  const auto* off = offsets->is_array() ? &offsets->as_array() : nullptr;
  if (!off || off->size() != 2 || !is_count((*off)[0]) || !is_count((*off)[1]) ||
      (*off)[0].as_int() > (*off)[1].as_int())
    bad("data_offsets must be [begin, end] with 0 <= begin <= end");
  begin = uint64_t((*off)[0].as_int());
  end = uint64_t((*off)[1].as_int());
}

// numel * dtype_size, or false when the product does not fit (a hostile shape must not wrap around).
bool byte_size(const std::vector<int64_t>& shape, DType dtype, uint64_t* out) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, uint64_t(d), &n)) return false;
  *out = n;
  return true;
}

void check_length_prefix(const std::string& path, size_t size) {
  if (size < 8)
    fail(ErrorCode::BadModel,
         path + ": truncated safetensors file (" + std::to_string(size) + " bytes, the header length alone needs 8)");
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorCode::Io, "cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::Io, "cannot read " + path + ": not a regular file");
  }
  size_t size = size_t(st.st_size);
  if (size < 8) ::close(fd);
  check_length_prefix(path, size);
  // MAP_PRIVATE + PROT_READ: the weights are read-only and pages are shared with the page cache.
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail(ErrorCode::Io, "cannot mmap " + path + ": " + std::strerror(map_errno));
  map_ = map;
  map_size_ = size;

  // From here on a throw would leak the mapping: the destructor does not run for a half-built object.
  try {
    parse(static_cast<const uint8_t*>(map_), size);
  } catch (...) {
    ::munmap(map_, map_size_);
    throw;
  }
}

SafetensorsFile::SafetensorsFile(const std::string& name, const uint8_t* bytes, size_t size) : path_(name) {
  check_length_prefix(name, size);
  parse(bytes, size);
}

// Validates the header of the image base[0 .. size) (size >= 8) and indexes its tensors.
void SafetensorsFile::parse(const uint8_t* base, size_t size) {
  const std::string& path = path_;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian on any host
  if (header_len > size - 8)
    fail(ErrorCode::BadModel, path + ": header length " + std::to_string(header_len) +
                                  " runs past the end of the file (" + std::to_string(size) + " bytes)");

  json::Value header;
  try {
    header = json::parse(std::string(reinterpret_cast<const char*>(base + 8), size_t(header_len)));
  } catch (const std::runtime_error& e) {
    fail(ErrorCode::BadModel, path + ": malformed safetensors header: " + e.what());
  }
  if (!header.is_object()) fail(ErrorCode::BadModel, path + ": malformed safetensors header: not a JSON object");

  const uint8_t* data = base + 8 + header_len;
  uint64_t data_size = size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // (begin, end) per tensor, for the overlap check
  std::vector<std::string> range_names;

  for (const std::string& name : header.keys()) {
    const json::Value& entry = *header.find(name);
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(ErrorCode::BadModel, path + ": __metadata__ is not an object");
      for (const std::string& k : entry.keys()) {
        const json::Value& v = *entry.find(k);
        if (!v.is_string())
          fail(ErrorCode::BadModel, path + ": __metadata__ value '" + json::escape(k) + "' is not a string");
        metadata_[k] = v.as_string();
      }
      continue;
    }
    TensorView t;
    t.name = name;
    t.file = path;
    uint64_t begin = 0, end = 0;
    parse_entry(path, name, entry, t, begin, end);
    if (end > data_size)
      fail(ErrorCode::BadModel, path + ": tensor " + json::escape(name) + ": offsets outside the data ([" +
                                    std::to_string(begin) + ", " + std::to_string(end) + "] but the data section has " +
                                    std::to_string(data_size) + " bytes)");
    uint64_t need = 0;
    if (!byte_size(t.shape, t.dtype, &need) || need != end - begin)
      fail(ErrorCode::BadModel, path + ": tensor " + json::escape(name) + ": shape " + shape_str(t.shape) +
                                    " with dtype " + dtype_name(t.dtype) + " needs " +
                                    (byte_size(t.shape, t.dtype, &need) ? std::to_string(need) : "too many") +
                                    " bytes but offsets give " + std::to_string(end - begin));
    t.data = data + begin;
    t.nbytes = size_t(end - begin);
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
    ranges.emplace_back(begin, end);
    range_names.push_back(name);
  }

  // Overlapping tensors would alias each other's storage. Sorted by begin, each range must start at or after
  // the furthest end seen so far; zero-size tensors occupy nothing and are skipped.
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t furthest = 0;
  size_t furthest_i = 0;
  for (size_t i : order) {
    if (ranges[i].first == ranges[i].second) continue;
    if (ranges[i].first < furthest)
      fail(ErrorCode::BadModel, path + ": tensor " + json::escape(range_names[i]) + " overlaps tensor " +
                                    json::escape(range_names[furthest_i]));
    furthest = ranges[i].second;
    furthest_i = i;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---- WeightSet --------------------------------------------------------------------------------------

WeightSet::WeightSet(const std::string& model_dir) : dir_(model_dir) {
  // Same preference as transformers: a single model.safetensors wins over an index.
  std::string single = join_path(model_dir, "model.safetensors");
  if (file_exists(single)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const TensorView& t : files_.back()->tensors()) by_name_[t.name] = &t;
    return;
  }

  std::string index_path = join_path(model_dir, "model.safetensors.index.json");
  if (!file_exists(index_path))
    fail(ErrorCode::BadModel, "no model.safetensors or model.safetensors.index.json in " + model_dir);

  std::string index_text = read_text_file(index_path);
  json::Value index;
  try {
    index = json::parse(index_text);
  } catch (const std::runtime_error& e) {
    fail(ErrorCode::BadModel, index_path + ": " + e.what());
  }
  const json::Value* weight_map = index.find("weight_map");
  if (!weight_map || !weight_map->is_object()) fail(ErrorCode::BadModel, index_path + ": missing 'weight_map' object");

  // Open each shard once, in the order the index first names it.
  std::map<std::string, SafetensorsFile*> shards;
  for (const std::string& tensor : weight_map->keys()) {
    const json::Value& shard_v = *weight_map->find(tensor);
    if (!shard_v.is_string())
      fail(ErrorCode::BadModel, index_path + ": weight_map entry for " + json::escape(tensor) + " is not a file name");
    const std::string& shard_name = shard_v.as_string();
    // A shard is a file of this folder: a name with a path in it would open a file elsewhere.
    if (shard_name.empty() || shard_name == "." || shard_name == ".." || shard_name.find('/') != std::string::npos)
      fail(ErrorCode::BadModel, index_path + ": weight_map entry for " + json::escape(tensor) + " names shard " +
                                    json::quote(shard_name) + ", which is not a file name of this folder");
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      std::string shard_path = join_path(model_dir, shard_name);
      if (!file_exists(shard_path))
        fail(ErrorCode::BadModel, "shard " + json::escape(shard_name) + " listed in " + index_path + " is missing");
      files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
      it = shards.emplace(shard_name, files_.back().get()).first;
    }
    const TensorView* t = it->second->find(tensor);
    if (!t)
      fail(ErrorCode::BadModel, "tensor " + json::escape(tensor) + " is listed in " + index_path + " for shard " +
                                    json::escape(shard_name) + " but that shard does not contain it");
    by_name_[tensor] = t;
  }
  // Tensors a shard holds beyond the index (transformers loads them too); the index's choice wins on a clash.
  for (const auto& f : files_)
    for (const TensorView& t : f->tensors()) by_name_.emplace(t.name, &t);
}

WeightSet::WeightSet(std::unique_ptr<SafetensorsFile> single) : dir_(single->path()) {
  files_.push_back(std::move(single));
  for (const TensorView& t : files_.back()->tensors()) by_name_[t.name] = &t;
}

const TensorView* WeightSet::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& WeightSet::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(ErrorCode::BadModel, "missing tensor " + json::escape(name) + " in " + dir_);
  return *t;
}

std::vector<std::string> WeightSet::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& kv : by_name_) out.push_back(kv.first);
  return out;
}

size_t WeightSet::total_bytes() const {
  size_t n = 0;
  for (const auto& kv : by_name_) n += kv.second->nbytes;
  return n;
}

// ---- conversion -------------------------------------------------------------------------------------

// Elements [begin, end) of t into out[0 .. end-begin).
void tensor_slice_to_f32(const TensorView& t, int64_t begin, int64_t end, float* out) {
  // Elements are read with memcpy: tensor data in the mmap need not be aligned to its dtype.
  size_t n = size_t(end - begin);
  const uint8_t* p = t.data + size_t(begin) * dtype_size(t.dtype);
  switch (t.dtype) {
    case DType::F32:
      if (n) std::memcpy(out, p, n * 4);
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = fp16_to_f32(h);
      }
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      return;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = float(d);
      }
      return;
    default:
      fail(ErrorCode::BadModel, "tensor " + json::escape(t.name) + " in " + t.file + " has dtype " +
                                    dtype_name(t.dtype) + ", not a floating type (F32, F16, BF16, F64)");
  }
}

void tensor_to_f32(const TensorView& t, float* out) {
  // Large tensors (a 7B model's embedding and lm_head are 254M elements each) convert in parallel slices; inside a
  // parallel loop (the loader's layers) this runs on the calling thread.
  const int64_t total = t.numel();
  constexpr int64_t kSlice = int64_t(1) << 22;
  if (total > kSlice) {
    parallel_for(total, kSlice, [&](int64_t b, int64_t e) { tensor_slice_to_f32(t, b, e, out + b); });
    return;
  }
  tensor_slice_to_f32(t, 0, total, out);
}

// ---- writer -----------------------------------------------------------------------------------------

static void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(ErrorCode::Io, "cannot write " + path + ": " + std::strerror(errno));
    p += w;
    n -= size_t(w);
  }
}

// The length prefix and header of a file holding `tensors` (returned sorted by name in `order`, the data order):
// the u64 little-endian length, then the JSON padded with spaces so the data section starts 8-byte aligned (readers
// may then map tensors directly). `path` only names the file in errors.
static std::string encode_header(const std::string& path, const std::vector<TensorToWrite>& tensors,
                                 const std::map<std::string, std::string>& metadata,
                                 std::vector<const TensorToWrite*>& order) {
  // Sorted by name, as the python library lays them out, so identical inputs give identical bytes.
  order.clear();
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& kv : metadata) {
      header += (first ? "" : ",") + json::quote(kv.first) + ":" + json::quote(kv.second);
      first = false;
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorToWrite& t = *order[i];
    if (i > 0 && t.name == order[i - 1]->name)
      fail(ErrorCode::BadInput, "write " + path + ": duplicate tensor " + t.name);
    if (t.name == "__metadata__") fail(ErrorCode::BadInput, "write " + path + ": '__metadata__' is not a tensor name");
    uint64_t need = 0;
    if (!byte_size(t.shape, t.dtype, &need) || need != t.nbytes)
      fail(ErrorCode::BadInput, "write " + path + ": tensor " + t.name + ": shape " + shape_str(t.shape) +
                                    " with dtype " + dtype_name(t.dtype) + " does not match " +
                                    std::to_string(t.nbytes) + " bytes");
    if (header.size() > 1) header += ",";
    header += json::quote(t.name) + ":{\"dtype\":\"" + dtype_name(t.dtype) + "\",\"shape\":" + shape_str(t.shape) +
              ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.nbytes) + "]}";
    offset += t.nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(uint64_t(header.size()) >> (8 * i)));
  return out + header;
}

std::vector<uint8_t> encode_safetensors(const std::vector<TensorToWrite>& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  std::string head = encode_header("(in memory)", tensors, metadata, order);
  std::vector<uint8_t> out(head.begin(), head.end());
  for (const TensorToWrite* t : order) {
    const uint8_t* p = static_cast<const uint8_t*>(t->data);
    out.insert(out.end(), p, p + t->nbytes);
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  const std::string head = encode_header(path, tensors, metadata, order);

  // Write to a temp name and rename: a crash mid-write never leaves a truncated file under the real name.
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(ErrorCode::Io, "cannot create " + tmp + " (writing " + path + "): " + std::strerror(errno));
  try {
    write_all(fd, head.data(), head.size(), path);
    for (const TensorToWrite* t : order)
      if (t->nbytes) write_all(fd, t->data, t->nbytes, path);
    if (::close(fd) != 0) {
      fd = -1;
      fail(ErrorCode::Io, "cannot write " + path + ": " + std::strerror(errno));
    }
    fd = -1;
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail(ErrorCode::Io, "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

}  // namespace dpo
