// A fixed pool of worker threads for the CPU backend (all cores by default, DPO_THREADS to override).
// parallel_for splits [0, n) into contiguous chunks; the split never changes a per-element result.
#pragma once
#include <cstdint>
#include <functional>

namespace dpo {

int cpu_thread_count();
void set_cpu_thread_count(int n);  // n <= 0 -> hardware_concurrency

// Runs fn(begin, end) over disjoint, non-empty chunks covering [0, n), in parallel, and waits for all of them.
// At most n / grain chunks, so they average at least `grain` elements (with several per thread their sizes fall,
// and the last may be shorter). Safe to call from several threads (calls are serialised).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace dpo
