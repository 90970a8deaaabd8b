// The CUDA backend's device memory: a caching allocator behind Backend::alloc / free, with the in-use / peak
// accounting of Backend::bytes_in_use / peak_bytes. Host-only declarations (also compiles as plain C++: the tests
// include it).
//
// Why a cache: the model allocates and frees every activation of every forward and every decode step, and
// cudaMalloc is slow while cudaFree synchronizes the device. Freed blocks are kept in free lists keyed by their
// rounded size and handed out again for a request of the same rounded size. This is safe without events because all
// work on this memory is queued on the backend's one stream: a block freed by the host while queued kernels still
// use it goes to its next user, whose work is queued after theirs.
// When cudaMalloc runs out of memory, every cached block is released (after a device synchronize) and the
// allocation retried once; a second failure is E_OOM with the advice text.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace dpo::cuda {

class CachingAllocator {
 public:
  CachingAllocator() = default;
  ~CachingAllocator();  // cudaFree every block, cached or still handed out (the owner synchronizes first)
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // The size a request is served with, and its free-list key: multiples of 512 B up to 1 MiB, of 2 MiB above
  // (cudaMalloc itself maps large blocks in 2 MiB pages, so the large rounding costs no extra memory).
  static size_t round_size(size_t bytes);

  // A block of at least `bytes` (round_size(bytes)); `what` names it in the E_OOM message.
  void* alloc(size_t bytes, const char* what = "activations");
  // Returns a block from alloc() to the cache (null is ignored; any other pointer is E_INTERNAL).
  void free(void* p);
  // Synchronizes the device and cudaFrees the cached (free) blocks.
  void release_cached();
  // Set by the owner while its stream is being captured into a CUDA graph: an out-of-memory cudaMalloc is then E_OOM
  // at once, without release_cached (a device synchronize during capture fails and invalidates the capture, and the
  // cached blocks would be dropped without being freed); the caller runs the ops uncaptured, where the retry works.
  void set_capturing(bool on);

  // Bytes handed out by alloc() and not freed, counted at their ROUNDED size (what they hold on the device), now and
  // at most since the last reset_peak(); bytes cached for reuse are not in use.
  uint64_t in_use() const;
  uint64_t peak() const;
  void reset_peak();
  uint64_t cached() const;

 private:
  void release_cached_locked();

  mutable std::mutex mu_;
  std::unordered_map<void*, size_t> live_;       // handed-out block -> rounded size
  std::map<size_t, std::vector<void*>> free_;    // rounded size -> cached blocks
  uint64_t in_use_ = 0, peak_ = 0, cached_ = 0;
  bool capturing_ = false;
};

// A block of a CachingAllocator owned by one object (move-only), returned to the cache in the destructor.
class PooledBuffer {
 public:
  PooledBuffer() = default;
  PooledBuffer(CachingAllocator& a, size_t bytes, const char* what) : owner_(&a), ptr_(a.alloc(bytes, what)) {}
  ~PooledBuffer() { reset(); }
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;
  PooledBuffer(PooledBuffer&& o) noexcept : owner_(o.owner_), ptr_(o.ptr_) { o.owner_ = nullptr, o.ptr_ = nullptr; }
  PooledBuffer& operator=(PooledBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      owner_ = o.owner_, ptr_ = o.ptr_;
      o.owner_ = nullptr, o.ptr_ = nullptr;
    }
    return *this;
  }
  void reset() noexcept {
    if (owner_ && ptr_) {
      try {
        owner_->free(ptr_);
      } catch (...) {  // cannot happen for a block of owner_; destructors must not throw
      }
    }
    owner_ = nullptr, ptr_ = nullptr;
  }
  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  CachingAllocator* owner_ = nullptr;
  void* ptr_ = nullptr;
};

}  // namespace dpo::cuda
