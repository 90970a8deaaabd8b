// The bf16-dot GEMV's switch and call counter (nf4_bf16_dot_switch.h).
#include "nf4_bf16_dot_switch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace dpo::cpu {
namespace {

int from_environment() {
  const char* env = std::getenv("DPO_CPU_BF16_DOT");
  return env && std::strcmp(env, "0") == 0 ? 0 : 1;
}

std::atomic<int> g_allowed{-1};  // -1: not read yet
std::atomic<uint64_t> g_calls{0};

}  // namespace

bool nf4_bf16_dot_allowed() {
  int a = g_allowed.load(std::memory_order_relaxed);
  if (a < 0) {
    int unread = -1;
    g_allowed.compare_exchange_strong(unread, from_environment());
    a = g_allowed.load(std::memory_order_relaxed);
  }
  return a == 1;
}

void set_nf4_bf16_dot_allowed(bool allowed) { g_allowed.store(allowed ? 1 : 0, std::memory_order_relaxed); }

uint64_t nf4_bf16_dot_calls() { return g_calls.load(std::memory_order_relaxed); }
void count_nf4_bf16_dot_call() { g_calls.fetch_add(1, std::memory_order_relaxed); }

}  // namespace dpo::cpu
