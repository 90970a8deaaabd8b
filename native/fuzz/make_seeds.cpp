// dpo-fuzz-seeds OUT_DIR [SHARED_DIR]: writes the generated seed corpora, OUT_DIR/<target>/seed-*: the tiny fuzz
// model's checkpoints (plain and pre-quantized) and, when SHARED_DIR is given, seeds made from the real files in
// it (stories260K's config.json, and its safetensors header with every tensor cut to at most 2 per dimension, the
// real names, dtypes and leading values kept). Nothing from SHARED_DIR is committed; this runs before each fuzz run.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "io/json.h"
#include "io/safetensors.h"
#include "io/text_file.h"
#include "fuzz_checkpoint.h"

namespace {

using dpo::fuzz::OwnedTensor;

void write_file(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  ::mkdir(dir.c_str(), 0755);
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + dir + "/" + name);
}

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// The real checkpoint with each tensor cut to its leading [<=2, <=2, ...] block: the real header, small enough for
// the fuzzer to mutate quickly.
std::vector<uint8_t> shrunk_checkpoint(const std::string& path) {
  dpo::SafetensorsFile real(path);
  std::vector<OwnedTensor> out;
  for (const dpo::TensorView& t : real.tensors()) {
    OwnedTensor s{t.name, t.dtype, t.shape, {}};
    int64_t n = 1;
    for (int64_t& d : s.shape) {
      d = std::min<int64_t>(d, 2);
      n *= d;
    }
    const size_t nbytes = size_t(n) * dpo::dtype_size(t.dtype);
    s.bytes.assign(t.data, t.data + std::min(nbytes, t.nbytes));
    s.bytes.resize(nbytes);
    out.push_back(std::move(s));
  }
  std::vector<dpo::TensorToWrite> views;
  for (const OwnedTensor& t : out) views.push_back({t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
  return dpo::encode_safetensors(views, real.metadata());
}

// The JSON header of a safetensors file, as text.
std::string header_text(const std::string& path) {
  const std::string all = dpo::read_text_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(all[size_t(i)]);
  return all.substr(8, size_t(n));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: dpo-fuzz-seeds OUT_DIR [SHARED_DIR]\n");
    return 2;
  }
  const std::string out = argv[1];
  ::mkdir(out.c_str(), 0755);
  using dpo::DType;
  const auto plain32 = dpo::fuzz::image_of(dpo::fuzz::tiny_tensors(DType::F32, false));
  const auto plain16 = dpo::fuzz::image_of(dpo::fuzz::tiny_tensors(DType::BF16, false));
  const auto prequantized = dpo::fuzz::image_of(dpo::fuzz::tiny_tensors(DType::F32, true));
  write_file(out + "/weights", "seed-tiny-f32", plain32);
  write_file(out + "/weights", "seed-tiny-bf16", plain16);
  write_file(out + "/weights", "seed-tiny-bnb4bit", prequantized);
  write_file(out + "/safetensors", "seed-tiny-f32", plain32);
  write_file(out + "/safetensors", "seed-tiny-bnb4bit", prequantized);
  write_file(out + "/quant_state", "seed-q-proj", bytes_of(dpo::fuzz::quant_state_json(8, 8, 0.125f)));
  write_file(out + "/model_config", "seed-tiny", bytes_of(dpo::fuzz::tiny_config_json()));
  write_file(out + "/json", "seed-tiny-config", bytes_of(dpo::fuzz::tiny_config_json()));
  int n = 9;
  if (argc >= 3) {
    const std::string model = std::string(argv[2]) + "/models/stories260K";
    const std::string config = dpo::read_text_file(model + "/config.json");
    write_file(out + "/model_config", "seed-stories260K", bytes_of(config));
    write_file(out + "/json", "seed-stories260K-config", bytes_of(config));
    write_file(out + "/json", "seed-stories260K-header", bytes_of(header_text(model + "/model.safetensors")));
    write_file(out + "/safetensors", "seed-stories260K-shrunk", shrunk_checkpoint(model + "/model.safetensors"));
    n += 4;
  }
  std::printf("dpo-fuzz-seeds: %d seeds in %s\n", n, out.c_str());
  return 0;
}
