// The self-check a GPU backend passes before the engine computes on it: every kernel family once on tiny shapes,
// through the Backend interface, compared with the CPU backend within the parity suites' tolerances
// (docs/cuda-self-check.md). A GPU that computes wrong numbers is then caught before it trains anything.
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dpo/backend.h"
#include "dpo/errors.h"

namespace dpo {

struct SelfCheckResult {
  bool passed = false;
  bool skipped = false;  // DPO_CUDA_SELF_CHECK=off (counts as passed)
  std::string kernel;   // the first failing kernel, a Backend method name (empty when passed, or when none ran)
  std::string detail;   // what differed (output, count, worst value) or the error the kernel raised
  bool error = false;   // the kernel raised an error rather than computing wrong numbers
  ErrorCode error_code = ErrorCode::Internal;  // that error's code (E_DEVICE_FAULT: the GPU context is gone)
  int kernels = 0;      // kernels compared (all of them when passed)
  double seconds = 0;   // wall time of the comparison, the backends already created
};

// Runs each check on `reference` (the CPU backend) and on `candidate`, in a fixed order, and stops at the first
// kernel whose outputs differ beyond tolerance or that throws. Never throws itself.
SelfCheckResult run_backend_self_check(Backend& candidate, Backend& reference);

// The kernels run_backend_self_check compares, in its order (Backend method names).
std::vector<std::string> backend_self_check_kernels();

// A GPU the engine may compute on, whose self-check runs once per process, the first time it is asked for (the
// CUDA device; tests build one over a CPU backend with an injected fault). Thread-safe.
class CheckedGpu {
 public:
  using Factory = std::function<std::unique_ptr<Backend>()>;
  CheckedGpu(std::string device, Factory make) : device_(std::move(device)), make_(std::move(make)) {}

  const std::string& device() const { return device_; }
  // A new backend on this GPU (throws what the factory throws).
  std::unique_ptr<Backend> make() const { return make_(); }
  // The self-check's result; the first call runs it on a backend of its own (creation errors count as failures).
  // DPO_CUDA_SELF_CHECK=off skips it: the result then passes with detail "skipped (DPO_CUDA_SELF_CHECK=off)".
  const SelfCheckResult& self_check();
  // "passed (31 kernels, 12.3 ms)" or "failed: ..." as `info` shows it, naming the kernel and the GPU.
  std::string summary();

 private:
  std::string device_;
  Factory make_;
  std::once_flag once_;
  SelfCheckResult result_;
};

// The message for a failed self-check: "the CUDA self-check failed on <GPU>: kernel <k> ...".
std::string self_check_failure_message(const std::string& device, const SelfCheckResult& r);

}  // namespace dpo
