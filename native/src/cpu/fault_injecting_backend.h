// A test backend that stands in for a faulty GPU: every op runs on an inner backend, except that one named op
// changes the first element of its output, or raises E_DEVICE_FAULT as a faulting kernel does. It lets the GPU
// self-check and the backend choice (docs/cuda-self-check.md) be tested on machines without a GPU.
#pragma once
#include <memory>
#include <string>

#include "dpo/backend.h"

namespace dpo {

enum class InjectedFault { None, Corrupt, Raise };

// `kernel` is a Backend method name ("attention_backward", "matmul_nf4", ...).
std::unique_ptr<Backend> make_fault_injecting_backend(std::unique_ptr<Backend> inner, std::string kernel,
                                                      InjectedFault fault);

// The stand-in GPU of DPO_TEST_GPU (tests only): "cpu" (the guarded CPU backend, no fault), "cpu:corrupt=KERNEL"
// or "cpu:raise=KERNEL". Throws E_BAD_INPUT for anything else.
std::unique_ptr<Backend> make_test_gpu_backend(const std::string& spec);
// Its device name, as `info` and the notes show it.
std::string test_gpu_device_name(const std::string& spec);

}  // namespace dpo
