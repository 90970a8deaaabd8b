// The CPU backend's cache of large freed blocks (block_cache.h).
#include "cpu/block_cache.h"

#include <cstdlib>

namespace dpo {

size_t BlockCache::capacity_for(size_t bytes) const {
  if (bytes < min_bytes_) return bytes;
  // Eight size classes per power of two: [2^k, 2^(k+1)) in steps of 2^(k-3).
  size_t top = 1;
  while (top <= bytes / 2) top *= 2;
  const size_t step = top / 8;
  return (bytes + step - 1) / step * step;
}

void* BlockCache::take(size_t bytes) {
  if (bytes < min_bytes_) return nullptr;
  const auto it = blocks_.find(capacity_for(bytes));
  if (it == blocks_.end()) return nullptr;
  void* p = it->second;
  cached_ -= it->first;
  blocks_.erase(it);
  return p;
}

bool BlockCache::keep(void* p, size_t capacity) {
  if (capacity < min_bytes_ || cached_ + capacity > cap_bytes_) return false;
  blocks_.emplace(capacity, p);
  cached_ += capacity;
  return true;
}

void BlockCache::release_all() {
  for (const auto& [capacity, p] : blocks_) std::free(p);
  blocks_.clear();
  cached_ = 0;
}

}  // namespace dpo
