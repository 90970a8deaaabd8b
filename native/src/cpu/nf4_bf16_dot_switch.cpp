// The NF4 GEMV's fast-path switches and the bf16-dot call counter (nf4_bf16_dot_switch.h).
#include "nf4_bf16_dot_switch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace dpo::cpu {
namespace {

int from_environment(const char* name) {
  const char* env = std::getenv(name);
  return env && std::strcmp(env, "0") == 0 ? 0 : 1;
}

// The switch's state (-1: not read yet) from the environment variable `name` on first use.
bool allowed(std::atomic<int>& state, const char* name) {
  int a = state.load(std::memory_order_relaxed);
  if (a < 0) {
    int unread = -1;
    state.compare_exchange_strong(unread, from_environment(name));
    a = state.load(std::memory_order_relaxed);
  }
  return a == 1;
}

// DPO_CPU_BF16_DOT_PREFER: "0" or "1", anything else (or unset) -1.
int preference_from_environment() {
  const char* env = std::getenv("DPO_CPU_BF16_DOT_PREFER");
  if (env && std::strcmp(env, "0") == 0) return 0;
  if (env && std::strcmp(env, "1") == 0) return 1;
  return -1;
}

std::atomic<int> g_allowed{-1}, g_fp16_table_allowed{-1};
std::atomic<int> g_preference{-2};  // -2: not read yet
std::atomic<uint64_t> g_calls{0}, g_tile_calls{0};

}  // namespace

bool nf4_bf16_dot_allowed() { return allowed(g_allowed, "DPO_CPU_BF16_DOT"); }
void set_nf4_bf16_dot_allowed(bool allowed) { g_allowed.store(allowed ? 1 : 0, std::memory_order_relaxed); }

bool nf4_fp16_table_allowed() { return allowed(g_fp16_table_allowed, "DPO_CPU_FP16_TABLE"); }
void set_nf4_fp16_table_allowed(bool allowed) {
  g_fp16_table_allowed.store(allowed ? 1 : 0, std::memory_order_relaxed);
}

int nf4_bf16_dot_preference() {
  int p = g_preference.load(std::memory_order_relaxed);
  if (p == -2) {
    int unread = -2;
    g_preference.compare_exchange_strong(unread, preference_from_environment());
    p = g_preference.load(std::memory_order_relaxed);
  }
  return p;
}
void set_nf4_bf16_dot_preference(int preference) { g_preference.store(preference, std::memory_order_relaxed); }

uint64_t nf4_bf16_dot_calls() { return g_calls.load(std::memory_order_relaxed); }
void count_nf4_bf16_dot_call() { g_calls.fetch_add(1, std::memory_order_relaxed); }
uint64_t nf4_bf16_dot_tile_calls() { return g_tile_calls.load(std::memory_order_relaxed); }
void count_nf4_bf16_dot_tile_call() { g_tile_calls.fetch_add(1, std::memory_order_relaxed); }

}  // namespace dpo::cpu
