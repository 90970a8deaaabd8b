// `dpo-tool info`: engine version, the backends this machine can use and the GPU self-check's result.
#include <cstdio>

#include "commands.h"

namespace dpo::tool {

int cmd_info(const Args&) {
  BackendInfo b = probe_backends();
  std::printf("engine %s\ncpu: %d threads, kernels %s\n", engine_version().c_str(), b.cpu_threads,
              b.cpu_kernels.c_str());
  if (b.cuda_available)
    std::printf("cuda: %s, %.1f GiB free of %.1f GiB\n", b.cuda_device.c_str(), b.cuda_free_bytes / 1073741824.0,
                b.cuda_total_bytes / 1073741824.0);
  else std::printf("cuda: unavailable (%s)\n", b.cuda_reason.c_str());
  std::printf("cuda self-check: %s\n",
              (b.cuda_self_check_note.empty() ? b.cuda_self_check : b.cuda_self_check_note).c_str());
  return 0;
}

}  // namespace dpo::tool
