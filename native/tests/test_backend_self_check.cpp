// The GPU self-check (model/backend_self_check.h) and the backend choice built on it (model/backend_choice.h), on
// the CPU with injected faults (cpu/fault_injecting_backend.h): every kernel's check catches a wrong output of that
// kernel and names it; a raised fault is reported with its code; --backend auto then computes on the CPU with a note
// naming the kernel and the GPU, --backend cuda fails with that message; the check runs once per process. With a
// GPU the real CUDA backend must pass it (otherwise that case prints "skipped: no GPU").
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "gpu_backend.h"
#include "cpu/fault_injecting_backend.h"
#include "dpo/backend.h"
#include "dpo/engine.h"
#include "model/backend_choice.h"
#include "model/backend_self_check.h"

using namespace dpo;

namespace {

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

std::unique_ptr<Backend> faulty(const std::string& kernel, InjectedFault f) {
  return make_fault_injecting_backend(make_guarded_cpu_backend(), kernel, f);
}

GpuOffer offer_of(CheckedGpu& gpu) {
  GpuOffer o;
  o.available = true;
  o.gpu = &gpu;
  return o;
}

}  // namespace

TEST_CASE(cpu_against_cpu_passes_every_kernel) {
  const std::vector<std::string> names = backend_self_check_kernels();
  std::printf("  %zu kernels:", names.size());
  for (const auto& n : names) std::printf(" %s", n.c_str());
  std::printf("\n");
  // The families the issue lists are all there.
  for (const char* k :
       {"matmul", "matmul_backward", "matmul_nf4", "matmul_nf4_backward_input", "attention", "attention_backward",
        "attention_decode", "rmsnorm", "rmsnorm_backward", "rope", "rope_backward", "logsoftmax_gather",
        "logsoftmax_gather_backward", "l2_norm", "adamw_step", "adamw_bnb32_step", "adamw_bnb8bit_step"}) {
    bool found = false;
    for (const auto& n : names) found = found || n == k;
    if (!found) std::printf("  missing kernel %s\n", k);
    CHECK(found);
  }
  auto a = make_cpu_backend(), b = make_cpu_backend();
  const SelfCheckResult r = run_backend_self_check(*a, *b);
  std::printf("  cpu vs cpu: %s, %d kernels, %.2f ms\n", r.passed ? "passed" : r.detail.c_str(), r.kernels,
              r.seconds * 1e3);
  CHECK(r.passed);
  CHECK(r.kernels == int(names.size()));
  CHECK(r.kernel.empty());
  // The guarded backend (device memory unreadable from the host) passes too: the check keeps the GPU's rules.
  auto g = make_guarded_cpu_backend();
  const SelfCheckResult rg = run_backend_self_check(*g, *b);
  std::printf("  cpu-guarded vs cpu: %s, %.2f ms\n", rg.passed ? "passed" : rg.detail.c_str(), rg.seconds * 1e3);
  CHECK(rg.passed);
  // No state is left behind on the candidate.
  CHECK(g->bytes_in_use() == 0);
}

TEST_CASE(each_kernel_check_catches_a_wrong_output_of_that_kernel) {
  auto cpu = make_cpu_backend();
  const std::vector<std::string> names = backend_self_check_kernels();
  for (size_t i = 0; i < names.size(); i++) {
    auto bad = faulty(names[i], InjectedFault::Corrupt);
    const SelfCheckResult r = run_backend_self_check(*bad, *cpu);
    if (r.passed || r.kernel != names[i] || r.error || r.kernels != int(i))
      std::printf("  corrupt %s: passed=%d kernel=%s kernels=%d detail=%s\n", names[i].c_str(), int(r.passed),
                  r.kernel.c_str(), r.kernels, r.detail.c_str());
    CHECK(!r.passed);
    CHECK(r.kernel == names[i]);
    CHECK(!r.error);
    CHECK(r.kernels == int(i));  // every kernel before it passed
    CHECK(contains(r.detail, "the CPU gives"));
  }
  const std::string msg = self_check_failure_message(
      "NVIDIA H200", run_backend_self_check(*faulty("attention_backward", InjectedFault::Corrupt), *cpu));
  std::printf("  e.g. %s\n", msg.c_str());
  CHECK(contains(msg, "NVIDIA H200") && contains(msg, "kernel attention_backward") && contains(msg, "dq"));
}

TEST_CASE(a_raised_fault_is_reported_with_its_code) {
  auto cpu = make_cpu_backend();
  auto bad = faulty("rope", InjectedFault::Raise);
  const SelfCheckResult r = run_backend_self_check(*bad, *cpu);
  CHECK(!r.passed && r.error);
  CHECK(r.kernel == "rope");
  CHECK(r.error_code == ErrorCode::DeviceFault);
  CHECK(contains(r.detail, "E_DEVICE_FAULT") && contains(r.detail, "illegal memory access in rope"));
}

TEST_CASE(auto_falls_back_to_the_cpu_naming_the_kernel_and_the_gpu) {
  CheckedGpu gpu("Test GPU 9000", [] { return faulty("matmul_nf4", InjectedFault::Corrupt); });
  GpuOffer offer = offer_of(gpu);
  std::string note;
  auto be = choose_backend(BackendChoice::Auto, offer, note);
  std::printf("  note: %s\n  backend: %s\n", note.c_str(), be->describe().c_str());
  CHECK(be->kind() == BackendKind::Cpu);
  CHECK(!contains(be->describe(), "injected"));  // the CPU backend, not the faulty one
  CHECK(contains(note, "Test GPU 9000") && contains(note, "kernel matmul_nf4") &&
        contains(note, "computing on the CPU"));
  CHECK(contains(gpu.summary(), "failed") && contains(gpu.summary(), "matmul_nf4"));
}

TEST_CASE(cuda_fails_with_the_message_and_a_code) {
  CheckedGpu gpu("Test GPU 9000", [] { return faulty("adamw_bnb8bit_step", InjectedFault::Corrupt); });
  GpuOffer offer = offer_of(gpu);
  std::string note;
  CHECK_THROWS_CODE(choose_backend(BackendChoice::Cuda, offer, note), ErrorCode::NoCuda,
                    "CUDA self-check failed on Test GPU 9000: kernel adamw_bnb8bit_step differs");
  // A faulted GPU keeps its code: the app's engine host restarts on E_DEVICE_FAULT for a fresh CUDA context.
  CheckedGpu faulted("Test GPU 9000", [] { return faulty("attention_decode", InjectedFault::Raise); });
  offer.gpu = &faulted;
  CHECK_THROWS_CODE(choose_backend(BackendChoice::Cuda, offer, note), ErrorCode::DeviceFault,
                    "kernel attention_decode raised an error");
  note.clear();
  auto be = choose_backend(BackendChoice::Auto, offer, note);
  CHECK(be->kind() == BackendKind::Cpu && contains(note, "attention_decode") && contains(note, "computing on the CPU"));
  // --backend cpu never asks the GPU.
  CHECK(choose_backend(BackendChoice::Cpu, GpuOffer{}, note)->kind() == BackendKind::Cpu);
  CHECK(note == "--backend cpu");
}

TEST_CASE(a_passing_gpu_is_chosen_and_checked_once) {
  int made = 0;
  CheckedGpu gpu("Test GPU 9000", [&made] {
    made++;
    return make_guarded_cpu_backend();
  });
  GpuOffer offer = offer_of(gpu);
  std::string note;
  auto a = choose_backend(BackendChoice::Auto, offer, note);
  CHECK(contains(a->describe(), "cpu-guarded"));
  CHECK(contains(note, "auto: CUDA device Test GPU 9000, self-check passed ("));
  auto c = choose_backend(BackendChoice::Cuda, offer, note);
  CHECK(contains(note, "--backend cuda: Test GPU 9000, self-check passed"));
  CHECK(made == 3);  // one backend for the self-check, one per load: the check itself ran once
  CHECK(gpu.self_check().passed && gpu.self_check().kernels == int(backend_self_check_kernels().size()));
}

TEST_CASE(a_gpu_that_cannot_be_created_fails_the_check) {
  CheckedGpu gpu("Old GPU", []() -> std::unique_ptr<Backend> {
    fail(ErrorCode::NoCuda, "GPU Old GPU has compute capability 7.5; the CUDA backend needs 8.0 or newer");
  });
  GpuOffer offer = offer_of(gpu);
  std::string note;
  auto be = choose_backend(BackendChoice::Auto, offer, note);
  CHECK(be->kind() == BackendKind::Cpu && contains(note, "compute capability 7.5"));
  CHECK_THROWS_CODE(choose_backend(BackendChoice::Cuda, offer, note), ErrorCode::NoCuda, "compute capability 7.5");
}

TEST_CASE(the_check_can_be_turned_off) {
  setenv("DPO_CUDA_SELF_CHECK", "off", 1);
  CheckedGpu gpu("Test GPU 9000", [] { return faulty("matmul", InjectedFault::Corrupt); });
  const SelfCheckResult& r = gpu.self_check();
  unsetenv("DPO_CUDA_SELF_CHECK");
  CHECK(r.passed && r.skipped);
  CHECK(contains(gpu.summary(), "skipped"));
}

// The decisive case on a GPU machine: the real CUDA backend passes against the CPU backend.
TEST_CASE(the_cuda_backend_passes_on_this_gpu) {
  Backend* g = dpo_test::gpu_or_skip();
  if (!g) return;
  auto cpu = make_cpu_backend();
  for (int run = 0; run < 3; run++) {  // the first run loads the kernels; the later ones show the steady cost
    const SelfCheckResult r = run_backend_self_check(*g, *cpu);
    std::printf("  run %d: %s in %.2f ms\n", run + 1,
                r.passed ? "passed" : self_check_failure_message(g->describe(), r).c_str(), r.seconds * 1e3);
    CHECK(r.passed);
    if (!r.passed) break;
  }
}

TEST_MAIN()
