// The op-test registry's runner (cases in backend_ops/*.cpp, rules in backend_ops/registry.h): every op of
// dpo::Backend on cpu, cpu-guarded and cuda (when a GPU answers; otherwise its parts print "skipped: no GPU").
//   test_backend_ops [-m eval|grad] [-o op[,op...]] [-b cpu|cpu-guarded|cuda[,...]] [-l]
// -m: only the reference / parity checks, or only the finite-difference gradients; -o: only these ops;
// -b: only these backends under test (the CPU backend still serves as the pair for CUDA); -l: list the ops.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "dpo/errors.h"

namespace dpo_test::ops {

dpo::Backend* OpContext::cuda_or_skip() const {
  if (!cuda_) std::printf("  skipped: %s\n", cuda_why_.c_str());
  return cuda_;
}

std::vector<Target> OpContext::all() const {
  std::vector<Target> t = hosts_;
  if (cuda_) t.push_back({"cuda", cuda_});
  return t;
}

namespace {

struct OpCase {
  const char* name;
  void (*run)(const OpContext&);
};

// The generated list of Backend's virtuals, each with its case: a virtual without op_case_<name> does not link.
#define DPO_OP_CASE_ENTRY(name) {#name, &op_case_##name},
const OpCase kOpCases[] = {DPO_BACKEND_VIRTUALS(DPO_OP_CASE_ENTRY)};
#undef DPO_OP_CASE_ENTRY
static_assert(std::size(kOpCases) == DPO_BACKEND_VIRTUAL_COUNT, "one case per Backend virtual");

const OpCase kExtraCases[] = {{"cuda_launchers", &cuda_launchers_check_arguments}};

std::set<std::string> split(const char* s) {
  std::set<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.insert(item);
  return out;
}

int usage() {
  std::fprintf(stderr, "usage: test_backend_ops [-m eval|grad] [-o op,...] [-b cpu,cpu-guarded,cuda] [-l]\n");
  return 2;
}

}  // namespace
}  // namespace dpo_test::ops

int main(int argc, char** argv) {
  using namespace dpo_test::ops;
  Mode mode = Mode::All;
  std::set<std::string> only_ops, only_backends;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "-l") {
      for (const OpCase& c : kOpCases) std::printf("%s\n", c.name);
      return 0;
    }
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "-m" && std::strcmp(v, "eval") == 0) mode = Mode::Eval;
    else if (a == "-m" && std::strcmp(v, "grad") == 0) mode = Mode::Grad;
    else if (a == "-o") only_ops = split(v);
    else if (a == "-b") only_backends = split(v);
    else return usage();
  }
  for (const std::string& op : only_ops) {
    bool known = false;
    for (const OpCase& c : kOpCases) known = known || op == c.name;
    for (const OpCase& c : kExtraCases) known = known || op == c.name;
    if (!known) {
      std::fprintf(stderr, "test_backend_ops: no case named '%s' (-l lists them)\n", op.c_str());
      return 2;
    }
  }
  auto selected = [&](const char* b) { return only_backends.empty() || only_backends.count(b) > 0; };

  const std::unique_ptr<dpo::Backend> cpu = dpo::make_cpu_backend();
  const std::unique_ptr<dpo::Backend> guarded = dpo::make_guarded_cpu_backend();
  OpContext ctx;
  ctx.cpu_ = cpu.get();
  ctx.mode_ = mode;
  if (selected("cpu")) ctx.hosts_.push_back({"cpu", cpu.get()});
  if (selected("cpu-guarded")) ctx.hosts_.push_back({"cpu-guarded", guarded.get()});
  if (selected("cuda")) {
    ctx.cuda_ = dpo_test::gpu();  // prints the device, or keeps why there is none
    ctx.cuda_why_ = "no GPU (" + dpo_test::gpu_reason() + ")";
  } else {
    ctx.cuda_why_ = "cuda not selected";
  }
  const int setup_failures = dpo_test::failures();  // a CUDA backend that failed other than "no GPU"
  std::printf("backends: %s, %s; cuda: %s\n", cpu->describe().c_str(), guarded->describe().c_str(),
              ctx.cuda_ ? ctx.cuda_->describe().c_str() : ctx.cuda_why_.c_str());

  int failed = 0, ran = 0;
  auto run = [&](const OpCase& c) {
    if (!only_ops.empty() && !only_ops.count(c.name)) return;
    const int before = dpo_test::failures();
    const auto t0 = std::chrono::steady_clock::now();
    try {
      c.run(ctx);
    } catch (const std::exception& e) {
      std::printf("  unexpected exception: %s\n", e.what());
      dpo_test::failures()++;
    }
    const bool ok = dpo_test::failures() == before;
    failed += ok ? 0 : 1;
    ran++;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %s (%.2f s)\n", ok ? "[pass]" : "[FAIL]", c.name, secs);
  };
  for (const OpCase& c : kOpCases) run(c);
  for (const OpCase& c : kExtraCases) run(c);
  std::printf("%d passed, %d failed (%d ops of dpo::Backend)\n", ran - failed, failed, DPO_BACKEND_VIRTUAL_COUNT);
  return failed == 0 && setup_failures == 0 ? 0 : 1;
}
