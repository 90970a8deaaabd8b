// The L2 size from the OS, read once.
#include "cache_sizes.h"

#include <unistd.h>

namespace dpo::cpu {

int64_t l2_cache_bytes() {
  static const int64_t bytes = [] {
    constexpr int64_t kUnknown = 512 * 1024;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);  // glibc reads it from cpuid; 0 or -1 where it cannot
    if (l2 > 0) return int64_t(l2);
#endif
    return kUnknown;
  }();
  return bytes;
}

}  // namespace dpo::cpu
