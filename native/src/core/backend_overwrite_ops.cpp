// Backend's default forms of the overwriting backward ops: zero-fill the outputs, then accumulate, which is what
// they are defined to equal bit for bit. Backends that can skip the fill override them (the CPU backend).
#include "dpo/backend.h"
#include "quant/nf4.h"

namespace dpo {

void Backend::matmul_nf4_backward_input_overwrite(float* dx, const float* dout, const Nf4Matrix& w, int M) {
  fill_zero(dx, size_t(M) * size_t(w.cols) * sizeof(float));
  matmul_nf4_backward_input(dx, dout, w, M);
}

void Backend::swiglu_backward_overwrite(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                        int M, int F) {
  const size_t bytes = size_t(M) * size_t(F) * sizeof(float);
  if (dgate) fill_zero(dgate, bytes);
  if (dup) fill_zero(dup, bytes);
  swiglu_backward(dgate, dup, dout, gate, up, M, F);
}

}  // namespace dpo
