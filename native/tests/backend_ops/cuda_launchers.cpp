// Not an op of Backend: the CUDA launchers themselves (src/cuda/*.cuh), called directly because these checks need no
// GPU and so no CUDA backend. A launcher checks its arguments before any CUDA call (E_BAD_INPUT, as the CPU op),
// launches nothing for empty work, and reports a failed launch as E_INTERNAL naming the op and the CUDA error.
#include <cstdio>

#include "backend_ops/registry.h"
#include "dpo/errors.h"
#include "model/rope_table.h"

#ifdef DPO_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/attention.cuh"
#include "cuda/cuda_probe.h"
#include "cuda/elementwise.cuh"
#include "cuda/logits.cuh"
#include "cuda/optimizer.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope.cuh"
#include "cuda/transfer.cuh"
#endif

using namespace dpo;

#ifdef DPO_WITH_CUDA

namespace {

void decoder_launchers() {
  using namespace dpo::cuda;
  CHECK_THROWS_CODE(launch_rope_forward(nullptr, nullptr, nullptr, 4, 2, 7, default_rope_table(8, 1e4f)),
                    ErrorCode::BadInput, "head_dim must be even");
  CHECK_THROWS_CODE(launch_rope_backward(nullptr, nullptr, nullptr, 4, 2, 1026, default_rope_table(8, 1e4f)),
                    ErrorCode::BadInput, "head_dim");
  CHECK_THROWS_CODE(launch_rope_forward(nullptr, nullptr, nullptr, 4, 2, 16, default_rope_table(8, 1e4f)),
                    ErrorCode::BadInput, "frequency table");
  CHECK_THROWS_CODE(launch_attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1,
                                             2, 2, 6, 4, 8),
                    ErrorCode::BadInput, "multiple of NKV");
  CHECK_THROWS_CODE(launch_attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr, 1, 2, 2, 4, 4, 512),
                    ErrorCode::BadInput, "head_dim");
  // Empty work launches nothing.
  launch_add_forward(nullptr, nullptr, nullptr, nullptr, 0);
  launch_rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 16, 1e-5f);
  launch_attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4, 4, 4, 4, 8);
  launch_logsoftmax_gather_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 61);
  if (cuda::probe().available) return;
  // Without a GPU a launch fails, and the launcher reports it as E_INTERNAL naming the op and the CUDA error.
  CHECK_THROWS_CODE(launch_add_forward(nullptr, nullptr, nullptr, nullptr, 10), ErrorCode::Internal,
                    "add_forward: cuda");
  CHECK_THROWS_CODE(launch_argmax_rows(nullptr, nullptr, nullptr, 3, 61), ErrorCode::Internal, "argmax_rows: cuda");
  cudaGetLastError();
}

void transfer_launchers() {
  using namespace dpo::cuda;
  CHECK_THROWS_CODE(launch_scatter_rows(nullptr, nullptr, nullptr, nullptr, -1, 4), ErrorCode::BadInput, "bad shape");
  CHECK_THROWS_CODE(launch_gather_rows(nullptr, nullptr, nullptr, nullptr, 2, -4), ErrorCode::BadInput, "bad shape");
  CHECK_THROWS_CODE(launch_axpy(nullptr, nullptr, nullptr, 1.0f, -1), ErrorCode::BadInput, "bad size");
  CHECK_THROWS_CODE(
      launch_attention_decode(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 8, 6, 4, 64),
      ErrorCode::BadInput, "multiple of NKV");
  // Empty work launches nothing.
  launch_scatter_rows(nullptr, nullptr, nullptr, nullptr, 0, 4);
  launch_gather_rows(nullptr, nullptr, nullptr, nullptr, 3, 0);
  launch_axpy(nullptr, nullptr, nullptr, 1.0f, 0);
  launch_scale(nullptr, nullptr, nullptr, 1.0f, 0);
  launch_dropout_forward(nullptr, nullptr, nullptr, nullptr, 1.0f, 0);
  launch_dropout_backward(nullptr, nullptr, nullptr, nullptr, 1.0f, 0);
  launch_embedding_backward(nullptr, nullptr, nullptr, nullptr, 0, 8);
  launch_attention_decode(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8, 4, 2, 64);
  if (cuda::probe().available) return;
  CHECK_THROWS_CODE(launch_axpy(nullptr, nullptr, nullptr, 1.0f, 10), ErrorCode::Internal, "axpy: cuda");
  CHECK_THROWS_CODE(launch_embedding_backward(nullptr, nullptr, nullptr, nullptr, 3, 8), ErrorCode::Internal,
                    "embedding_backward: cuda");
  CHECK_THROWS_CODE(
      launch_attention_decode(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 8, 4, 2, 64),
      ErrorCode::Internal, "attention_decode: cuda");
  cudaGetLastError();
}

void optimizer_launchers() {
  using namespace dpo::cuda;
  const AdamWStepScalars s{};
  const BnbAdamStepScalars b{};
  CHECK_THROWS_CODE(launch_l2_norm(nullptr, nullptr, nullptr, -1, nullptr), ErrorCode::BadInput, "bad size");
  CHECK_THROWS_CODE(launch_adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, s, -1), ErrorCode::BadInput,
                    "bad size");
  CHECK_THROWS_CODE(launch_adamw_bnb32_step(nullptr, nullptr, nullptr, nullptr, nullptr, b, -1), ErrorCode::BadInput,
                    "bad size");
  CHECK_THROWS_CODE(
      launch_adamw_bnb8bit_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, b, -1),
      ErrorCode::BadInput, "bad size");
  // Empty tensors launch nothing.
  launch_adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, s, 0);
  launch_adamw_bnb32_step(nullptr, nullptr, nullptr, nullptr, nullptr, b, 0);
  launch_adamw_bnb8bit_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, b, 0);
  if (cuda::probe().available) return;
  CHECK_THROWS_CODE(launch_adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, s, 10), ErrorCode::Internal,
                    "adamw_step: cuda");
  CHECK_THROWS_CODE(
      launch_adamw_bnb8bit_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, b, 5000),
      ErrorCode::Internal, "adamw_bnb8bit_step: cuda");
  cudaGetLastError();
}

}  // namespace

void dpo_test::ops::cuda_launchers_check_arguments(const OpContext& ctx) {
  if (!ctx.eval()) return;
  decoder_launchers();
  transfer_launchers();
  optimizer_launchers();
}

#else  // !DPO_WITH_CUDA

void dpo_test::ops::cuda_launchers_check_arguments(const OpContext&) {
  std::printf("  skipped: no GPU (the engine was built without CUDA)\n");
}

#endif
