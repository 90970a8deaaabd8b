// make_cuda_backend() for builds without nvcc: there is no CUDA backend to make.
#ifndef DPO_WITH_CUDA
#include "dpo/backend.h"
#include "dpo/errors.h"

namespace dpo {

std::unique_ptr<Backend> make_cuda_backend() {
  fail(ErrorCode::NoCuda, "this engine was built without CUDA (no nvcc at build time, or DPO_CUDA=OFF)");
}

}  // namespace dpo
#endif
