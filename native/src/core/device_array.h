// Buffers in a backend's memory (GPU memory on CUDA), owned RAII-style. Host code never dereferences them: they go to
// backend ops, or cross with upload/download. `Mirror` is host data as a backend sees it: the host pointer itself
// when the backend computes in host memory, an uploaded copy otherwise (weights, LoRA A/B). The optimizer step
// updates a mirror in place on the backend (writable()) and brings the host copy up to date with pull().
#pragma once
#include <cstddef>
#include <utility>
#include <vector>

#include "dpo/backend.h"

namespace dpo {

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(Backend& be, size_t n) : be_(&be), n_(n) { p_ = static_cast<T*>(be.alloc(n * sizeof(T))); }
  ~DeviceArray() { release(); }
  DeviceArray(DeviceArray&& o) noexcept { *this = std::move(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release();
      be_ = std::exchange(o.be_, nullptr);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  // A zero-filled array.
  static DeviceArray zeros(Backend& be, size_t n) {
    DeviceArray a(be, n);
    a.zero();
    return a;
  }
  static DeviceArray from_host(Backend& be, const T* host, size_t n) {
    DeviceArray a(be, n);
    a.upload(host, n);
    return a;
  }
  static DeviceArray from_host(Backend& be, const std::vector<T>& host) {
    return from_host(be, host.data(), host.size());
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

  // Re-allocates only when the size changes (scratch reused across calls); the contents are then undefined.
  void ensure(Backend& be, size_t n) {
    if (p_ && n == n_ && be_ == &be) return;
    *this = DeviceArray(be, n);
  }
  void upload(const T* host, size_t n) {
    if (n) be_->upload(p_, host, n * sizeof(T));
  }
  void upload(const std::vector<T>& host) { upload(host.data(), host.size()); }
  void download(T* host, size_t n) const {
    if (n) be_->download(host, p_, n * sizeof(T));
  }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    download(h.data(), n_);
    return h;
  }
  void zero() {
    if (n_) be_->fill_zero(p_, n_ * sizeof(T));
  }

 private:
  void release() {
    if (p_) be_->free(p_);
    p_ = nullptr;
    n_ = 0;
  }
  Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0;
};

class Mirror {
 public:
  // (Re)publishes `host` to the backend: call after every host-side change of the data. An empty vector gives null.
  void sync(Backend& be, const std::vector<float>& host) {
    if (host.empty()) {
      ptr_ = nullptr;
      copy_ = DeviceArray<float>();
    } else if (be.shares_host_memory()) {
      ptr_ = host.data();
      copy_ = DeviceArray<float>();
    } else {
      copy_.ensure(be, host.size());
      copy_.upload(host);
      ptr_ = copy_.get();
    }
  }
  const float* get() const { return ptr_; }
  // The same pointer, for backend ops that update the data in place (the optimizer step). Where it aliases the host
  // vector the update lands there directly; the mirrored vectors (LoRA A/B, full-precision weights) are owned
  // non-const by their holders, which are the ones that hand a mirror to the optimizer.
  float* writable() { return const_cast<float*>(ptr_); }
  // host = the backend's copy after writable() updates (no-op where the mirror aliases `host`, which is current).
  // `host` must be the vector this mirror was last synced from.
  void pull(std::vector<float>& host) const {
    if (!copy_.empty()) copy_.download(host.data(), host.size() < copy_.size() ? host.size() : copy_.size());
  }

 private:
  const float* ptr_ = nullptr;
  DeviceArray<float> copy_;
};

}  // namespace dpo
