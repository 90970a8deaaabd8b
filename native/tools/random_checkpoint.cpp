// Random bf16 safetensors, sharded, written in parallel (see random_checkpoint.h). The safetensors layout:
// 8-byte little-endian header length, the JSON header padded with spaces to a multiple of 8, then the tensors
// back to back in header order.
#include "random_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/half.h"
#include "dpo/errors.h"
#include "tool_common.h"

namespace dpo::tool {

namespace {

constexpr int64_t kChunkElems = int64_t(8) << 20;  // 8 Mi bf16 = 16 MiB per work item

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int64_t numel(const RandomTensor& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

struct Placement {
  int shard = 0;
  uint64_t data_offset = 0;  // inside the shard's data section
  uint64_t file_offset = 0;  // absolute, once the shard's header length is known
};

std::string shard_name(int i, int n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

std::string header_json(const std::vector<RandomTensor>& tensors, const std::vector<Placement>& place, int shard) {
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  for (size_t i = 0; i < tensors.size(); i++) {
    if (place[i].shard != shard) continue;
    std::string shape;
    for (int64_t d : tensors[i].shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const uint64_t b = place[i].data_offset, e = b + uint64_t(numel(tensors[i])) * 2;
    h += "," + json_quote(tensors[i].name) + ":{\"dtype\":\"BF16\",\"shape\":[" + shape + "],\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
  }
  h += "}";
  while ((h.size() + 8) % 8 != 0) h += ' ';
  return h;
}

void pwrite_all(int fd, const void* data, size_t n, uint64_t offset, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, off_t(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw EngineError(ErrorCode::Io, "cannot write " + path + ": " + std::strerror(errno));
    p += w, n -= size_t(w), offset += uint64_t(w);
  }
}

}  // namespace

CheckpointStats write_random_checkpoint(const std::string& dir, const std::vector<RandomTensor>& tensors, int shards,
                                        uint64_t seed, int threads) {
  const auto t0 = Clock::now();
  CheckpointStats st;
  for (const RandomTensor& t : tensors) st.params += numel(t);
  st.bytes = uint64_t(st.params) * 2;
  shards = std::max(1, std::min<int>(shards, int(tensors.size())));
  st.shards = shards;

  // Split the ordered tensors into `shards` runs of about total/shards bytes each.
  std::vector<Placement> place(tensors.size());
  std::vector<uint64_t> shard_bytes(size_t(shards), 0);
  uint64_t done = 0;
  int shard = 0;
  for (size_t i = 0; i < tensors.size(); i++) {
    const uint64_t nb = uint64_t(numel(tensors[i])) * 2;
    const uint64_t target = st.bytes * uint64_t(shard + 1) / uint64_t(shards);
    if (shard + 1 < shards && shard_bytes[size_t(shard)] > 0 && done + nb / 2 > target) shard++;
    place[i] = {shard, shard_bytes[size_t(shard)], 0};
    shard_bytes[size_t(shard)] += nb;
    done += nb;
  }
  shards = shard + 1;  // fewer than asked when tensors are few and large
  st.shards = shards;

  std::string mk = "mkdir -p '" + dir + "'";
  if (std::system(mk.c_str()) != 0) throw EngineError(ErrorCode::Io, "cannot create " + dir);
  // The other layout's files would make the directory ambiguous to a loader: remove them.
  ::unlink((dir + (shards == 1 ? "/model.safetensors.index.json" : "/model.safetensors")).c_str());
  std::vector<int> fds(size_t(shards), -1);
  std::vector<std::string> paths(static_cast<size_t>(shards));
  for (int s = 0; s < shards; s++) {
    paths[size_t(s)] = dir + "/" + shard_name(s, shards);
    const std::string h = header_json(tensors, place, s);
    int fd = ::open(paths[size_t(s)].c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) throw EngineError(ErrorCode::Io, "cannot create " + paths[size_t(s)] + ": " + std::strerror(errno));
    fds[size_t(s)] = fd;
    uint8_t len[8];
    for (int k = 0; k < 8; k++) len[k] = uint8_t(uint64_t(h.size()) >> (8 * k));
    pwrite_all(fd, len, 8, 0, paths[size_t(s)]);
    pwrite_all(fd, h.data(), h.size(), 8, paths[size_t(s)]);
    if (::ftruncate(fd, off_t(8 + h.size() + shard_bytes[size_t(s)])) != 0)
      throw EngineError(ErrorCode::Io, "cannot size " + paths[size_t(s)] + ": " + std::strerror(errno));
    for (size_t i = 0; i < tensors.size(); i++)
      if (place[i].shard == s) place[i].file_offset = 8 + h.size() + place[i].data_offset;
  }

  // Work items: (tensor, chunk); each fills its own buffer, so thread count and order do not change the bytes.
  std::vector<std::pair<size_t, int64_t>> items;
  for (size_t i = 0; i < tensors.size(); i++)
    for (int64_t c = 0; c * kChunkElems < numel(tensors[i]); c++) items.push_back({i, c});
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::string error;
  auto worker = [&] {
    std::vector<uint16_t> buf(static_cast<size_t>(kChunkElems));
    for (size_t k; !failed && (k = next++) < items.size();) {
      const auto [ti, c] = items[k];
      const RandomTensor& t = tensors[ti];
      const int64_t begin = c * kChunkElems, n = std::min(kChunkElems, numel(t) - begin);
      uint64_t s = seed ^ (uint64_t(ti) << 40) ^ uint64_t(c) * 0x2545f4914f6cdd1dull;
      const float a = t.scale * std::sqrt(3.0f) / 32768.0f, b = t.offset - t.scale * std::sqrt(3.0f);
      for (int64_t e = 0; e < n; e += 4) {
        uint64_t r = splitmix64(s);
        for (int64_t q = 0; q < 4 && e + q < n; q++, r >>= 16)
          buf[size_t(e + q)] = f32_to_bf16(b + a * (float(r & 0xffff) + 0.5f));
      }
      try {
        pwrite_all(fds[size_t(place[ti].shard)], buf.data(), size_t(n) * 2, place[ti].file_offset + uint64_t(begin) * 2,
                   paths[size_t(place[ti].shard)]);
      } catch (const std::exception& ex) {
        if (!failed.exchange(true)) error = ex.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int k = 0; k < std::max(1, threads); k++) pool.emplace_back(worker);
  for (auto& th : pool) th.join();
  for (int fd : fds) ::close(fd);
  if (failed) throw EngineError(ErrorCode::Io, error);

  if (shards > 1) {
    std::string idx = "{\n  \"metadata\": {\"total_size\": " + std::to_string(st.bytes) + "},\n  \"weight_map\": {";
    for (size_t i = 0; i < tensors.size(); i++)
      idx += std::string(i ? "," : "") + "\n    " + json_quote(tensors[i].name) + ": " +
             json_quote(shard_name(place[i].shard, shards));
    write_file(dir + "/model.safetensors.index.json", idx + "\n  }\n}\n");
  }
  st.seconds = seconds_since(t0);
  return st;
}

}  // namespace dpo::tool
