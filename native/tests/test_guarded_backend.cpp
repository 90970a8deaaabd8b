// The guarded CPU backend's two promises (its ops are checked with every backend's in test_backend_ops): an op
// handed host memory throws, and host code touching backend memory crashes.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <vector>

#include "check.h"
#include "dpo/backend.h"
#include "dpo/errors.h"

TEST_CASE(guarded_backend_rejects_host_memory_in_ops) {
  auto be = dpo::make_guarded_cpu_backend();
  float* d = static_cast<float*>(be->alloc(16 * sizeof(float)));
  std::vector<float> host(16, 1.0f), back(16, 0.0f);
  be->upload(d, host.data(), 16 * sizeof(float));
  be->scale(d, d, 2.0f, 16);
  be->download(back.data(), d, 16 * sizeof(float));
  CHECK(back[5] == 2.0f);
  CHECK(be->bytes_in_use() == 16 * sizeof(float));
  CHECK_THROWS_CODE(be->scale(d, host.data(), 2.0f, 16), dpo::ErrorCode::Internal, "host memory");
  be->free(d);
  CHECK(be->bytes_in_use() == 0);
  CHECK(be->peak_bytes() == 16 * sizeof(float));
}

TEST_CASE(guarded_backend_memory_is_unreadable_from_host_code) {
  auto be = dpo::make_guarded_cpu_backend();
  volatile float* d = static_cast<float*>(be->alloc(64));
  std::fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    const float x = d[0];  // must fault
    _exit(x == 12345.0f ? 3 : 0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  be->free(const_cast<float*>(d));
}

int main() { return dpo_test::run_all(); }
