// `dpo-tool self-check [--candidate cuda|cpu|cpu-guarded|cpu:corrupt=KERNEL|cpu:raise=KERNEL] [--repeat N]`: the
// GPU self-check of model/backend_self_check.h run N times against the CPU backend, each run's result and time,
// then the median (its cost; docs/cuda-self-check.md). Exit 1 when a run fails. Default candidate: cuda.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "commands.h"
#include "cpu/fault_injecting_backend.h"
#include "model/backend_self_check.h"

namespace dpo::tool {

int cmd_self_check(const Args& a) {
  const std::string which = get(a, "candidate", "cuda");
  const int repeat = std::max(1, get_int(a, "repeat", "5"));
  const Clock::time_point t0 = Clock::now();
  std::unique_ptr<Backend> candidate = which == "cuda"          ? make_cuda_backend()
                                       : which == "cpu"         ? make_cpu_backend()
                                       : which == "cpu-guarded" ? make_guarded_cpu_backend()
                                                                : make_test_gpu_backend(which);
  std::unique_ptr<Backend> reference = make_cpu_backend();
  std::printf("self-check: %s against %s (backends created in %.1f ms); %zu kernels\n", candidate->describe().c_str(),
              reference->describe().c_str(), seconds_since(t0) * 1e3, backend_self_check_kernels().size());
  std::vector<double> ms;
  int failed = 0;
  double first_ms = 0;
  for (int i = 0; i < repeat; i++) {
    const SelfCheckResult r = run_backend_self_check(*candidate, *reference);
    ms.push_back(r.seconds * 1e3);
    if (i == 0) first_ms = r.seconds * 1e3;
    if (r.passed) {
      std::printf("  run %d: passed, %d kernels, %.2f ms\n", i + 1, r.kernels, r.seconds * 1e3);
    } else {
      std::printf("  run %d: FAILED after %d kernels, %.2f ms: %s\n", i + 1, r.kernels, r.seconds * 1e3,
                  self_check_failure_message(candidate->describe(), r).c_str());
      failed++;
      if (r.error) break;  // a raised error (a GPU fault) leaves nothing worth repeating
    }
  }
  std::sort(ms.begin(), ms.end());
  std::printf("self-check: %s; median %.2f ms over %zu runs, first run %.2f ms (on a GPU it loads the kernels)\n",
              failed ? "FAILED" : "passed", ms[ms.size() / 2], ms.size(), first_ms);
  return failed ? 1 : 0;
}

}  // namespace dpo::tool
