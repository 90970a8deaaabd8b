// The op-test registry (test_backend_ops; ggml's test-backend-ops in spirit): one case per virtual of dpo::Backend,
// each calling the op only through the Backend& interface on every backend this machine has, in two modes:
//  - eval: the op against a double-precision reference on the CPU backends (plain and guarded), and the CUDA backend
//    against the CPU backend (tolerances per case, bitwise where the arithmetic is the same), plus determinism and
//    batch invariance on the GPU;
//  - grad: every backward op against central finite differences of the double forward, on every backend.
// The case list is generated from backend.h (cmake/backend_virtuals.cmake), so a virtual without an op_case_<name>
// below fails the build. See docs/op-tests.md.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "backend_virtuals.h"  // generated: DPO_BACKEND_VIRTUALS(X)
#include "check.h"
#include "dpo/backend.h"
#include "gpu_backend.h"

namespace dpo_test::ops {

enum class Mode { All, Eval, Grad };

// One backend under test and the name it is reported by.
struct Target {
  std::string name;  // "cpu", "cpu-guarded", "cuda"
  dpo::Backend* be = nullptr;
  bool is_cuda() const { return be->kind() == dpo::BackendKind::Cuda; }
};

// What a case runs on: the backends selected (all by default), and the mode.
class OpContext {
 public:
  // The plain CPU backend: always there, the side every other backend is paired with.
  dpo::Backend& cpu() const { return *cpu_; }
  // cpu and cpu-guarded (those selected): the backends checked against the double reference.
  const std::vector<Target>& hosts() const { return hosts_; }
  // The CUDA backend, or null after printing "skipped: no GPU (<why>)" (or "not selected").
  dpo::Backend* cuda_or_skip() const;
  // Every selected backend: hosts() then CUDA when there is one (no skip line: for checks that need no reference).
  std::vector<Target> all() const;
  bool eval() const { return mode_ != Mode::Grad; }
  bool grad() const { return mode_ != Mode::Eval; }

  dpo::Backend* cpu_ = nullptr;
  std::vector<Target> hosts_;
  dpo::Backend* cuda_ = nullptr;
  std::string cuda_why_;  // why there is no CUDA backend
  Mode mode_ = Mode::All;
};

// One case per Backend virtual: `void op_case_matmul(OpContext&)` and so on, defined in backend_ops/*.cpp.
#define DPO_DECLARE_OP_CASE(name) void op_case_##name(const OpContext& ctx);
DPO_BACKEND_VIRTUALS(DPO_DECLARE_OP_CASE)
#undef DPO_DECLARE_OP_CASE

// Checks that are not an op: the CUDA launchers' argument checks and launch errors, which run without a GPU.
void cuda_launchers_check_arguments(const OpContext& ctx);

using dpo_test::Arena;  // buffers on one backend, host vectors in and out (gpu_backend.h)

}  // namespace dpo_test::ops

// Defines the case of Backend::name; a name that is not a declared case (not a virtual) does not compile.
// clang-format off: BreakAfterAttributes would split the signature after the parameter's [[maybe_unused]].
#define OP_CASE(name) void dpo_test::ops::op_case_##name([[maybe_unused]] const dpo_test::ops::OpContext& ctx)
// clang-format on
