// The byte tables' budget and what is taken of it (nf4_gemv_table_budget.h).
#include "nf4_gemv_table_budget.h"

#include <atomic>
#include <cstdlib>

namespace dpo::cpu {
namespace {

constexpr int64_t kDefaultBudgetMiB = 1024;

int64_t budget_from_environment() {
  const char* env = std::getenv("DPO_CPU_GEMV_TABLES_MB");
  if (!env || !*env) return kDefaultBudgetMiB << 20;
  char* end = nullptr;
  const long long mib = std::strtoll(env, &end, 10);
  if (*end != '\0' || mib < 0) return kDefaultBudgetMiB << 20;  // not a size: the default, as if unset
  return int64_t(mib) << 20;
}

std::atomic<int64_t> g_budget{-1};  // -1: not read from the environment yet
std::atomic<int64_t> g_in_use{0};

}  // namespace

int64_t nf4_gemv_table_budget() {
  int64_t b = g_budget.load(std::memory_order_relaxed);
  if (b < 0) {
    int64_t unread = -1;
    g_budget.compare_exchange_strong(unread, budget_from_environment());
    b = g_budget.load(std::memory_order_relaxed);
  }
  return b;
}

void set_nf4_gemv_table_budget(int64_t bytes) { g_budget.store(bytes < 0 ? 0 : bytes, std::memory_order_relaxed); }

bool reserve_nf4_gemv_tables(int64_t bytes) {
  const int64_t budget = nf4_gemv_table_budget();
  int64_t used = g_in_use.load(std::memory_order_relaxed);
  do {
    if (used + bytes > budget) return false;
  } while (!g_in_use.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void release_nf4_gemv_tables(int64_t bytes) { g_in_use.fetch_sub(bytes, std::memory_order_relaxed); }

int64_t nf4_gemv_tables_in_use() { return g_in_use.load(std::memory_order_relaxed); }

}  // namespace dpo::cpu
