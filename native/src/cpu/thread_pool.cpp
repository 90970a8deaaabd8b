// The CPU backend's persistent worker pool: parallel_for hands contiguous chunks of [0, n) to the workers and the
// calling thread, which claim them from a shared counter. Nested calls (from inside a task) run inline.
// Waiting is a bounded spin and then a sleep, on both sides (docs/cpu-kernels.md#thread-pool): decode issues hundreds
// of short parallel_for calls per token, where a sleep/wake pair per call costs as much as the call's work, while a
// machine busy with other work must not see our threads spin for long.
#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dpo {
namespace {

using Fn = std::function<void(int64_t, int64_t)>;
using Clock = std::chrono::steady_clock;

// True while this thread runs a parallel_for task (always true on workers): a nested parallel_for runs inline,
// which cannot deadlock and cannot change results (chunking never changes per-element arithmetic).
thread_local bool t_in_task = false;

int default_thread_count() {
  if (const char* env = std::getenv("DPO_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? int(hc) : 1;
}

// How long a thread spins before it sleeps: a worker waiting for the next call, the caller waiting for the last
// chunk. Long enough to bridge the gaps of a training step too (the host-side work between a layer's calls): 500 us
// ran its warm pass 3-6% faster than 50 us (docs/cpu-kernels.md#thread-pool), where 2 ms was slower again. Short
// next to a scheduler time slice, so under outside load a spinning thread gives its core back quickly.
// DPO_POOL_SPIN_US overrides it (0: sleep at once), for measurements.
Clock::duration spin_budget() {
  int us = 500;
  if (const char* env = std::getenv("DPO_POOL_SPIN_US")) us = std::max(0, std::atoi(env));
  return std::chrono::microseconds(us);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until done() or the budget runs out; true when done() held.
template <class Done>
bool spin_until(Done done, Clock::duration budget) {
  if (budget <= Clock::duration::zero()) return done();
  const Clock::time_point until = Clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 16; i++) {  // the clock is read every 16 pauses (~1-2 us)
      if (done()) return true;
      cpu_relax();
    }
    if (Clock::now() >= until) return done();
  }
}

// The claim word: the job's sequence number in the high 32 bits, its chunk count in the next 16 and the next
// unclaimed chunk in the low 16. A thread that wakes late for a finished job sees another sequence number and claims
// nothing, so a job waits only for the chunks it handed out, never for a worker the OS has not scheduled yet. The
// count lives in the same word as the sequence number on purpose: read from a separate field, a late worker could
// pair the old job's word with the next job's larger count while the caller sets that job up, claim a chunk that
// does not exist, and count it as done for the next job (which then ended early or never).
constexpr uint64_t kMaxChunks = 0xffff;
constexpr uint64_t pack(uint64_t seq, uint64_t chunks, uint64_t chunk) { return (seq << 32) | (chunks << 16) | chunk; }
constexpr uint32_t seq_of(uint64_t word) { return uint32_t(word >> 32); }
constexpr uint32_t chunks_of(uint64_t word) { return uint32_t(word >> 16) & 0xffff; }
constexpr uint32_t chunk_of(uint64_t word) { return uint32_t(word) & 0xffff; }

// Where chunk i of `chunks` starts in [0, n). Equal chunks (`falling` false), or chunks whose sizes fall linearly to
// zero (chunk i covers about 2 (chunks - i) - 1 parts in chunks^2) so that those claimed last are short and the
// threads finish close together: with equal chunks the thread that ran out first waited for half a chunk on average,
// 2-3% of a training step's matmuls (docs/cpu-kernels.md#thread-pool). Chunks claimed late may be empty.
inline int64_t chunk_begin(int64_t i, int64_t chunks, int64_t n, bool falling) {
  if (!falling) return i * n / chunks;
  if (i <= 0) return 0;  // the ends exactly, whatever doubles make of a huge n
  if (i >= chunks) return n;
  // The share left after chunk i, (chunks - i)^2 / chunks^2: both roundings are monotone, so the starts never go back.
  const double left = double((chunks - i) * (chunks - i)) / double(chunks * chunks);
  return std::clamp<int64_t>(n - int64_t(double(n) * left), 0, n);
}

class Pool {
 public:
  Pool() : threads_(default_thread_count()), spin_(spin_budget()) {}

  int threads() const { return threads_.load(); }
  void set_threads(int n) { threads_.store(n > 0 ? n : default_thread_count()); }  // applied at the next call

  void run(int64_t n, int64_t grain, const Fn& fn) {
    std::lock_guard<std::mutex> call_lock(call_mu_);  // one parallel_for at a time across caller threads
    const int threads = threads_.load();
    resize_workers(threads - 1);
    // At most n / grain chunks (on average at least `grain` long); up to 8 per thread so uneven tasks balance (a
    // tiled matmul of 18 blocks on 2 threads gets chunks of 1-2 blocks, not 2-3).
    const int64_t chunks = std::min<int64_t>({n / grain, int64_t(threads) * 8, int64_t(kMaxChunks)});
    fn_ = &fn;
    n_ = n;
    // Falling sizes only with several chunks per thread: with one or two each, every chunk is some thread's share.
    falling_ = chunks >= int64_t(threads) * 4;
    error_ = nullptr;
    done_.store(0);
    seq_++;
    // Publishes the job (seq_cst: ordered before the sleepers_ check below).
    claim_.store(pack(seq_, uint64_t(chunks), 0));
    if (sleepers_.load() > 0) {
      {
        std::lock_guard<std::mutex> lk(mu_);
      }  // a worker between its check and its wait holds mu_
      wake_cv_.notify_all();
    }
    t_in_task = true;
    work(seq_);
    t_in_task = false;
    const uint32_t all = uint32_t(chunks);
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == all; }, spin_)) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_waiting_.store(true);
      done_cv_.wait(lk, [&] { return done_.load() == all; });
      caller_waiting_.store(false);
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Claims and runs chunks of job `seq` until none are left. Chunk i is [chunk_begin(i), chunk_begin(i + 1)).
  void work(uint32_t seq) {
    uint64_t word = claim_.load(std::memory_order_acquire);
    for (;;) {
      if (seq_of(word) != seq || chunk_of(word) >= chunks_of(word)) return;
      // Once the claim succeeds the job cannot end before this chunk is done, so its fields stay put until then.
      if (!claim_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const int64_t i = chunk_of(word), chunks = chunks_of(word);
      uint32_t finished = 1;
      try {
        const int64_t begin = chunk_begin(i, chunks, n_, falling_), end = chunk_begin(i + 1, chunks, n_, falling_);
        if (begin < end) (*fn_)(begin, end);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lk(mu_);
          if (!error_) error_ = std::current_exception();
        }
        finished += skip_rest(seq, uint32_t(chunks));
      }
      const uint32_t total = uint32_t(chunks);
      if (done_.fetch_add(finished) + finished == total) {
        // The job is over: touch nothing of it from here on (the caller may already be running the next one).
        if (caller_waiting_.load()) {
          {
            std::lock_guard<std::mutex> lk(mu_);
          }
          done_cv_.notify_one();
        }
        return;
      }
      word = claim_.load(std::memory_order_acquire);
    }
  }

  // Claims every chunk of job `seq` (of `chunks` chunks) not yet claimed and returns how many: they count as done,
  // unrun. The caller's chunk is not done, so the job is still `seq`.
  uint32_t skip_rest(uint32_t seq, uint32_t chunks) {
    uint64_t word = claim_.load();
    while (seq_of(word) == seq && chunk_of(word) < chunks) {
      if (claim_.compare_exchange_weak(word, pack(seq, chunks, chunks))) return chunks - chunk_of(word);
    }
    return 0;
  }

  // `seen` is the job sequence number at creation, so a worker started just before a job still runs it.
  void worker_loop(uint32_t seen) {
    t_in_task = true;
    auto fresh = [&] { return seq_of(claim_.load(std::memory_order_acquire)) != seen || stop_.load(); };
    for (;;) {
      if (!spin_until(fresh, spin_)) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);  // seq_cst: ordered before the check in wait's predicate
        wake_cv_.wait(lk, fresh);
        sleepers_.fetch_sub(1);
      }
      if (stop_.load()) return;
      seen = seq_of(claim_.load(std::memory_order_acquire));
      work(seen);
    }
  }

  // Called with call_mu_ held, so no job is in flight.
  void resize_workers(int count) {
    count = std::max(count, 0);
    if (int(workers_.size()) == count) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true);
    }
    wake_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_.store(false);
    const uint32_t seq = seq_;
    for (int i = 0; i < count; i++) workers_.emplace_back([this, seq] { worker_loop(seq); });
  }

  std::atomic<int> threads_;
  const Clock::duration spin_;
  std::mutex call_mu_;
  std::mutex mu_;
  std::condition_variable wake_cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  uint32_t seq_ = 0;  // written only by the caller, under call_mu_
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint32_t> done_{0};
  const Fn* fn_ = nullptr;
  int64_t n_ = 0;
  bool falling_ = false;
  std::exception_ptr error_;
};

// Deliberately never destroyed: workers blocked at process exit must not outlive a destroyed mutex.
Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

int cpu_thread_count() { return pool().threads(); }

void set_cpu_thread_count(int n) { pool().set_threads(n); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (t_in_task || n <= grain || pool().threads() <= 1) {
    fn(0, n);
    return;
  }
  pool().run(n, grain, fn);
}

}  // namespace dpo
