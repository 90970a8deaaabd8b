// The CUDA backend for the GPU parity tests: created once; null (with the reason kept) when there is no usable GPU
// or no CUDA build, so those tests can print "skipped: no GPU" and pass on machines without one.
#pragma once
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "dpo/backend.h"
#include "dpo/errors.h"

namespace dpo_test {

inline std::string& gpu_reason() {
  static std::string r;
  return r;
}

inline dpo::Backend* gpu() {
  static bool tried = false;
  static std::unique_ptr<dpo::Backend> be;
  if (!tried) {
    tried = true;
    try {
      be = dpo::make_cuda_backend();
      std::printf("  cuda backend: %s\n", be->describe().c_str());
    } catch (const dpo::EngineError& e) {
      gpu_reason() = e.what();
      if (e.code() != dpo::ErrorCode::NoCuda) {  // anything but "no GPU" is a real failure
        std::printf("  make_cuda_backend failed with %s: %s\n", e.code_name(), e.what());
        failures()++;
      }
    }
  }
  return be.get();
}

// The CUDA backend, or null after printing "skipped: no GPU (why)".
inline dpo::Backend* gpu_or_skip() {
  dpo::Backend* g = gpu();
  if (!g) std::printf("  skipped: no GPU (%s)\n", gpu_reason().c_str());
  return g;
}

// Buffers on one backend, freed at scope exit; host vectors in and out.
class Arena {
 public:
  explicit Arena(dpo::Backend& be) : be_(be) {}
  ~Arena() {
    for (void* p : ptrs_) {
      try {
        be_.free(p);
      } catch (...) {
      }
    }
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  template <class T = float>
  T* alloc(size_t n) {
    void* p = be_.alloc(n * sizeof(T));
    ptrs_.push_back(p);
    return static_cast<T*>(p);
  }
  template <class T>
  T* put(const std::vector<T>& v) {
    T* p = alloc<T>(v.size());
    be_.upload(p, v.data(), v.size() * sizeof(T));
    return p;
  }
  template <class T>
  std::vector<T> get(const T* p, size_t n) {
    std::vector<T> v(n);
    be_.download(v.data(), p, n * sizeof(T));
    return v;
  }

 private:
  dpo::Backend& be_;
  std::vector<void*> ptrs_;
};

}  // namespace dpo_test
