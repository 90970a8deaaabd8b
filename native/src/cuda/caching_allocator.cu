// The CUDA backend's caching allocator (see caching_allocator.cuh for why and how): free lists by rounded size,
// release-and-retry on out-of-memory, in-use / peak accounting.
#include "cuda/caching_allocator.cuh"

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/cuda_common.cuh"
#include "dpo/errors.h"

namespace dpo::cuda {

namespace {
constexpr size_t kSmallLimit = size_t(1) << 20;  // up to 1 MiB: 512 B granules
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t(2) << 20;  // above: 2 MiB granules

size_t round_up(size_t n, size_t g) { return (n + g - 1) / g * g; }
}  // namespace

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes <= kSmallLimit) return round_up(std::max<size_t>(bytes, 1), kSmallGranule);
  return round_up(bytes, kLargeGranule);
}

CachingAllocator::~CachingAllocator() {
  for (auto& kv : free_)
    for (void* p : kv.second) cudaFree(p);
  for (auto& kv : live_) cudaFree(kv.first);
}

void* CachingAllocator::alloc(size_t bytes, const char* what) {
  if (bytes > (SIZE_MAX >> 1))  // would wrap when rounded; no device has that much anyway
    fail(ErrorCode::Oom,
         "out of GPU memory allocating " + std::to_string(bytes >> 20) + " MiB for " + what + ": " + oom_advice());
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {  // reuse: no CUDA call at all
    p = it->second.back();
    it->second.pop_back();
    cached_ -= size;
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation && cached_ > 0 && !capturing_) {  // blocks of other sizes may be in the way
      cudaGetLastError();
      release_cached_locked();
      err = cudaMalloc(&p, size);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail(ErrorCode::Oom, "out of GPU memory allocating " + std::to_string(bytes >> 20) + " MiB for " + what + " (" +
                               std::to_string(free_b >> 20) + " of " + std::to_string(total_b >> 20) + " MiB free, " +
                               std::to_string(in_use_ >> 20) + " MiB in use by the engine): " + oom_advice());
    }
    DPO_CUDA_CHECK(err);
  }
  live_.emplace(p, size);
  in_use_ += size;
  peak_ = std::max(peak_, in_use_);
  return p;
}

void CachingAllocator::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end())
    fail(ErrorCode::Internal, "cuda backend: free() of a pointer that alloc() did not return (or freed twice)");
  const size_t size = it->second;
  live_.erase(it);
  in_use_ -= size;
  free_[size].push_back(p);
  cached_ += size;
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
}

void CachingAllocator::set_capturing(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  capturing_ = on;
}

// Queued kernels may still use a cached block (freed by the host, not yet by the stream): wait for them first.
// Errors are cleared rather than thrown: a sticky fault shows up on the retried cudaMalloc instead.
void CachingAllocator::release_cached_locked() {
  if (cudaDeviceSynchronize() != cudaSuccess) cudaGetLastError();
  for (auto& kv : free_)
    for (void* p : kv.second) cudaFree(p);
  cudaGetLastError();
  free_.clear();
  cached_ = 0;
}

uint64_t CachingAllocator::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

uint64_t CachingAllocator::peak() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = in_use_;
}

uint64_t CachingAllocator::cached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

}  // namespace dpo::cuda
