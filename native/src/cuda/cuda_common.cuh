// Shared helpers of the CUDA backend: CUDA errors become dpo::EngineError (never abort: docs/architecture.md#layers),
// a move-only device buffer, and the launch checks every launcher runs after its kernel launch.
//
// The op launchers, one header and one .cu per family named as the CPU file of the same ops (rmsnorm, rope,
// attention, elementwise, logits, transfer, optimizer; matmul and matmul_nf4 likewise, though they check their
// launches with DPO_CUDA_LAUNCH_CHECK), follow these conventions.
// Semantics, shapes and argument order are those of src/cpu/ops.h (the CPU reference); every pointer is a device
// pointer, the stream comes first, and the work is queued on that stream (nothing here synchronizes, except the
// attention backward's scratch fallback noted in attention.cu). Every op computes each output row with arithmetic
// that depends only on that row and the row length (never on M, B or T), and every reduction runs in a fixed order
// without float atomics, so results are batch-invariant and bit-reproducible run to run.
//
// Errors never abort: a launcher checks its arguments (EngineError BadInput, like the CPU op where the CPU op checks
// on the host) and then the launch (check_last_launch: EngineError Internal, "<op>: <cuda error name>").
// Where the CPU op validates data that here lives on the device (embedding ids, logsoftmax targets), the kernels
// cannot throw; they write a defined value instead (see the launcher comments) and the caller validates on the host.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "dpo/errors.h"

namespace dpo::cuda {

// What the user can change when the GPU runs out of memory (the E_OOM message ends with it).
inline const char* oom_advice() {
  return "use a smaller batch size, max length or LoRA rank, load the base with --quant nf4, close other programs "
         "using the GPU, or run with --backend cpu";
}

// Errors after which every later CUDA call of this process fails too ("sticky": the context is corrupted).
inline bool is_sticky_cuda_error(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorLaunchTimeout: return true;
    default: return false;
  }
}

// Throws for a failed CUDA call: E_OOM for cudaErrorMemoryAllocation (with advice), E_DEVICE_FAULT for a sticky
// fault (the engine host then restarts), E_INTERNAL otherwise with the CUDA error name, its text and the operation.
// Non-sticky errors are cleared so the next call starts clean.
[[noreturn]]
inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();
  if (err == cudaErrorMemoryAllocation)
    fail(ErrorCode::Oom, std::string("out of GPU memory in ") + what + ": " + oom_advice());
  if (is_sticky_cuda_error(err))
    fail(ErrorCode::DeviceFault, std::string("the GPU reported ") + cudaGetErrorName(err) + " in " + what + " (" +
                                     file + ":" + std::to_string(line) +
                                     "); a CUDA context cannot be used after such a fault, so the engine must "
                                     "restart (the app does this itself). If it happens again, use --backend cpu "
                                     "and report it.");
  fail(ErrorCode::Internal, std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                                ") in " + what + " at " + file + ":" + std::to_string(line));
}

inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, what, file, line);
}

// DPO_CUDA_SYNC=1 in the environment makes every launch check wait for its kernel, so an asynchronous fault is
// reported by the op that caused it (debugging aid; off by default).
inline bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("DPO_CUDA_SYNC");
    return v && v[0] && v[0] != '0';
  }();
  return on;
}

// After each launch: configuration errors (bad grid, too much shared memory) surface here, named by the op.
inline void check_launch(const char* op, cudaStream_t stream, const char* file, int line) {
  check_cuda(cudaGetLastError(), op, file, line);
  if (sync_after_launch()) check_cuda(cudaStreamSynchronize(stream), op, file, line);
}

// The launch check of the op launchers (rmsnorm.cuh .. optimizer.cuh): throws EngineError(Internal, "<op>: <cuda
// error name>") if the last launch (or an earlier async error) failed. As DPO_CUDA_LAUNCH_CHECK: a sticky fault is
// E_DEVICE_FAULT (the app restarts the engine on it, not on E_INTERNAL), and DPO_CUDA_SYNC=1 waits for the kernel
// so a fault is reported by the op that caused it (these launchers do not pass their stream here, so it waits for
// the device).
inline void check_last_launch(const char* op) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_after_launch()) err = cudaDeviceSynchronize();
  if (err == cudaSuccess) return;
  if (is_sticky_cuda_error(err)) throw_cuda_error(err, op, __FILE__, __LINE__);
  throw EngineError(ErrorCode::Internal, std::string(op) + ": " + cudaGetErrorName(err));
}

}  // namespace dpo::cuda

// DPO_CUDA_CHECK(cudaMemcpy(...)): throws EngineError naming the failed call.
#define DPO_CUDA_CHECK(call) ::dpo::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// DPO_CUDA_LAUNCH_CHECK("matmul_forward", stream): right after a kernel<<<...>>> launch.
#define DPO_CUDA_LAUNCH_CHECK(op, stream) ::dpo::cuda::check_launch((op), (stream), __FILE__, __LINE__)

namespace dpo::cuda {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A device allocation owned by one object (move-only); freed in the destructor without throwing.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes, const char* what = "device buffer") { allocate(bytes, what); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr, o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = o.ptr_, bytes_ = o.bytes_;
      o.ptr_ = nullptr, o.bytes_ = 0;
    }
    return *this;
  }

  // Frees any previous allocation, then allocates `bytes` (E_OOM with the size and advice when it fails).
  void allocate(size_t bytes, const char* what = "device buffer") {
    release();
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      fail(ErrorCode::Oom, std::string("out of GPU memory allocating ") + std::to_string(bytes >> 20) + " MiB for " +
                               what + ": " + oom_advice());
    }
    check_cuda(err, what, __FILE__, __LINE__);
    ptr_ = p, bytes_ = bytes;
  }
  void release() noexcept {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr, bytes_ = 0;
  }

  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace dpo::cuda
