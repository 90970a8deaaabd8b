// RMSNorm on the CPU, forward and backward (Llama/Mistral LlamaRMSNorm in fp32):
// out = w * (x * rsqrt(mean(x^2) + eps)).
#include <cmath>

#include "ops.h"
#include "thread_pool.h"
#include "vec.h"

namespace dpo::cpu {

void rmsnorm_forward(float* out /*(M,C)*/, float* rstd /*(M) or null*/, const float* x /*(M,C)*/,
                     const float* w /*(C)*/, int M, int C, float eps) {
  parallel_for(M, grain_for(4.0 * C), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      const float* xm = x + m * C;
      float* om = out + m * C;
      // mean(x^2) as a 16-lane sum (fixed order) divided by C, then 1/sqrt in fp32 like torch.rsqrt.
      const float ms = dot16(xm, xm, C) / float(C);
      const float r = 1.0f / std::sqrt(ms + eps);
      for (int64_t c = 0; c < C; c++) om[c] = w[c] * (xm[c] * r);  // HF: weight * (hidden * rsqrt(...))
      if (rstd) rstd[m] = r;
    }
  });
}

// y_i = w_i x_i r with r = (sum_j x_j^2 / C + eps)^(-1/2), so
// dx_i = r w_i dy_i - (r^3 / C) x_i sum_j w_j dy_j x_j,  dw_i = sum_m dy_i x_i r.
void rmsnorm_backward(float* dx /*(M,C)*/, float* dw /*(C) or null*/, const float* dout /*(M,C)*/,
                      const float* x /*(M,C)*/, const float* w /*(C)*/, const float* rstd /*(M)*/, int M, int C) {
  parallel_for(M, grain_for(6.0 * C), [&](int64_t m0, int64_t m1) {
    thread_local std::vector<float> buf;
    float* g = scratch(buf, size_t(C));
    for (int64_t m = m0; m < m1; m++) {
      const float* xm = x + m * C;
      const float* dy = dout + m * C;
      const float r = rstd[m];
      for (int64_t c = 0; c < C; c++) g[c] = w[c] * dy[c];  // dL/d(x r)
      const float s = dot16(g, xm, C);
      const float k = r * r * r / float(C) * s;
      float* d = dx + m * C;
      for (int64_t c = 0; c < C; c++) d[c] += r * g[c] - k * xm[c];
    }
  });
  if (dw) {
    // Columns are independent; each sums over m in order.
    parallel_for(C, grain_for(3.0 * M), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; c++) {
        float s = 0.0f;
        for (int64_t m = 0; m < M; m++) s += dout[m * C + c] * (x[m * C + c] * rstd[m]);
        dw[c] += s;
      }
    });
  }
}

}  // namespace dpo::cpu
