// Freed blocks of the CPU backend too large for the C heap, kept for the next alloc() of the same size class.
// glibc serves allocations above its mmap threshold (at most 32 MiB) with a fresh mapping each time and unmaps them
// on free: a training step's scored-row logits (66 MB at 519 rows x 32000) were mapped, faulted in page by page and
// unmapped every step, the unmapping on the calling thread while the other cores waited
// (docs/performance.md#the-steps-between-the-matmuls). Smaller blocks are left to malloc, which reuses them.
#pragma once
#include <cstddef>
#include <map>

namespace dpo {

class BlockCache {
 public:
  // Blocks of at least min_bytes are cached, up to cap_bytes of them in all.
  BlockCache(size_t min_bytes, size_t cap_bytes) : min_bytes_(min_bytes), cap_bytes_(cap_bytes) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;
  ~BlockCache() { release_all(); }

  // The capacity to allocate for a request of `bytes`: a size class (within 1/8 above it) when the block would be
  // cached, so that requests a little apart (a step's row count varies) share blocks; `bytes` otherwise.
  size_t capacity_for(size_t bytes) const;
  // A cached block of capacity capacity_for(bytes), taken out of the cache, or null.
  void* take(size_t bytes);
  // Keeps a freed block of `capacity` bytes for reuse; false (the caller frees it) when it is too small or the cache
  // is full.
  bool keep(void* p, size_t capacity);
  // Frees every cached block.
  void release_all();
  size_t cached_bytes() const { return cached_; }

 private:
  size_t min_bytes_, cap_bytes_, cached_ = 0;
  std::multimap<size_t, void*> blocks_;  // capacity -> block
};

}  // namespace dpo
