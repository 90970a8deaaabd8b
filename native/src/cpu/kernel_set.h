// Kernel sets (docs/cpu-kernels.md): the matmul files (native/CMakeLists.txt, DPO_KERNEL_SOURCES) are compiled once per
// instruction set (AVX-512, AVX2, baseline x86-64) into that set's namespace, and matmul_dispatch.cpp forwards ops.h's
// matmuls to the set this CPU runs best (or the one DPO_CPU_KERNELS names). The dispatcher's declarations open no
// namespace inline, so that it can name every set; the lane code (vec.h) and a set's own files put themselves in the
// inline namespace DPO_KERNEL_NS.
#pragma once
#include <cstdint>
#include <string>

#include "../quant/nf4.h"
#include "bf16_argmax_sketch.h"
#include "nf4_product.h"

// The set this translation unit is compiled for.
#if defined(__AVX512F__)
#define DPO_KERNEL_NS isa_avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define DPO_KERNEL_NS isa_avx2
#else
#define DPO_KERNEL_NS isa_generic
#endif

// One set's kernels (signatures and shapes as the same-named ops in ops.h), for the two macros below.
#define DPO_MATMUL_KERNEL_DECLS                                                                                      \
  void matmul_forward(float* out, const float* x, const float* w, const float* bias, int M, int K, int N);           \
  void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const float* w, int M, \
                       int K, int N);                                                                                \
  void matmul_bf16_forward(float* out, const float* x, const uint16_t* w, int M, int K, int N);                      \
  void matmul_bf16_backward_input(float* dx, const float* dout, const uint16_t* w, int M, int K, int N);             \
  void matmul_nf4_forward_many(const Nf4Product* products, int count, const float* x, int M);                        \
  void matmul_nf4_backward_input(float* dx, const float* dout, const Nf4Matrix& w, int M, bool overwrite);           \
  void matmul_nf4_prepare(const Nf4Matrix& w);                                                                       \
  bool matmul_bf16_argmax(int* out, const float* x, const uint16_t* w, const Bf16ArgmaxSketch& s, int M, int K,      \
                          int N);                                                                                    \
  std::string nf4_products_summary();

// Declares one set's kernels in namespace dpo::cpu::ns (the dispatcher, which names every set).
#define DPO_DECLARE_MATMUL_KERNELS(ns) \
  namespace dpo::cpu::ns {             \
  DPO_MATMUL_KERNEL_DECLS              \
  }

// The same in a set's own files, which vec.h has put in the inline namespace DPO_KERNEL_NS: reopened inline (clang
// warns when an inline namespace is reopened without it, -Winline-namespace-reopened-noninline).
#define DPO_DECLARE_OWN_MATMUL_KERNELS() \
  namespace dpo::cpu {                   \
  inline namespace DPO_KERNEL_NS {       \
  DPO_MATMUL_KERNEL_DECLS                \
  }                                      \
  }
