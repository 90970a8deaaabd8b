// Bytes a backend has handed out through alloc(), now and at most (benchmarks report the peak; errors say what is
// held). Shared by the CPU backends; thread-safe because tests and the addon may use one backend from two threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <mutex>

namespace dpo {

class AllocStats {
 public:
  void add(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ += bytes;
    peak_ = std::max(peak_, in_use_);
  }
  void remove(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ -= bytes;
  }
  uint64_t in_use() const {
    std::lock_guard<std::mutex> lock(mu_);
    return in_use_;
  }
  uint64_t peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = in_use_;
  }

 private:
  mutable std::mutex mu_;
  uint64_t in_use_ = 0, peak_ = 0;
};

}  // namespace dpo
