// The CPU backend's persistent worker pool: parallel_for hands contiguous chunks of [0, n) to the workers and the
// calling thread, which take them from a shared counter. Nested calls (from inside a task) run inline.
#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dpo {
namespace {

using Fn = std::function<void(int64_t, int64_t)>;

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

class Pool {
 public:
  Pool() : threads_(default_thread_count()) {}

  int threads() const { return threads_.load(); }
  void set_threads(int n) { threads_.store(n > 0 ? n : default_thread_count()); }  // applied at the next call

  void run(int64_t n, int64_t grain, const Fn& fn) {
    std::lock_guard<std::mutex> call_lock(call_mu_);  // one parallel_for at a time across caller threads
    const int threads = threads_.load();
    resize_workers(threads - 1);
    // Chunks are at least `grain` long; a few per thread so uneven tasks balance.
    const int64_t chunks = std::min<int64_t>(n / grain, int64_t(threads) * 4);
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_ = n;
      chunks_ = chunks;
      next_.store(0);
      active_ = int(workers_.size());
      error_ = nullptr;
      job_seq_.fetch_add(1);
    }
    wake_cv_.notify_all();
    t_in_task = true;
    work();
    t_in_task = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return active_ == 0; });
      fn_ = nullptr;
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Takes chunks until none are left. Chunk i is [i*n/chunks, (i+1)*n/chunks).
  void work() {
    for (;;) {
      const int64_t i = next_.fetch_add(1);
      if (i >= chunks_) return;
      const int64_t begin = i * n_ / chunks_, end = (i + 1) * n_ / chunks_;
      try {
        (*fn_)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(chunks_);  // skip the remaining chunks
      }
    }
  }

  // `seen` is the job sequence number at creation, so a worker started just before a job still runs it.
  void worker_loop(uint64_t seen) {
    t_in_task = true;
    for (;;) {
      // Spin briefly before sleeping: decode issues many small parallel_for calls back to back.
      for (int spin = 0; spin < 256 && job_seq_.load(std::memory_order_acquire) == seen && !stop_.load(); spin++)
        std::this_thread::yield();
      {
        std::unique_lock<std::mutex> lk(mu_);
        wake_cv_.wait(lk, [&] { return stop_.load() || job_seq_.load() != seen; });
        if (stop_.load()) return;
        seen = job_seq_.load();
      }
      work();
      std::lock_guard<std::mutex> lk(mu_);
      if (--active_ == 0) done_cv_.notify_one();
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
    const uint64_t seq = job_seq_.load();
    for (int i = 0; i < count; i++) workers_.emplace_back([this, seq] { worker_loop(seq); });
  }

  std::atomic<int> threads_;
  std::mutex call_mu_;
  std::mutex mu_;
  std::condition_variable wake_cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> job_seq_{0};
  const Fn* fn_ = nullptr;
  int64_t n_ = 0, chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
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
