// Causal grouped-query attention on the GPU against a key/value store with absolute query positions, forward and
// backward, as cpu::attention_forward / attention_backward (same masks, same zero-output rule, fp32 softmax).
//
// Parallel decomposition
//  forward: one block of 256 threads (8 warps) per query row (b, t, h). The row's q is staged in shared memory;
//    scores: warp w takes keys s = w, w+8, ... <= qpos (skipping invalid keys), its lanes split HD (d = lane,
//    lane+32, ...) and an xor butterfly sums the lanes; the S scores sit in shared memory (dynamic, S floats).
//    max (exact in any order), sum of exp (block_sum: fixed order) and p = e / sum follow; probs are written when
//    asked (0 for masked entries). out[d] = sum_s p_s v_s[d]: with P = 256 / HD thread groups (1 when HD >= 256),
//    group g sums keys s = g, g+P, ... in order for its d, and the P partials are added in order 0..P-1.
//    A row's arithmetic depends only on its q, qpos, its sequence's keys and HD: never on B, T, or the store length
//    beyond qpos, so batched / cached decode equals one-at-a-time.
//  decode (launch_attention_decode): the same kernel, one block per (row r, head h) of all M rows in one launch, the
//    keys taken from KV-cache sequence seq[r]; so decode and prefill attention give the same bits.
//  backward, two kernels, no float atomics:
//   1) one block per query row (like the forward): dp_s = dout.v_s (warp per key), D = sum_s p_s dp_s (block_sum),
//      ds_s = p_s (dp_s - D), dq += scale sum_s ds_s k_s (thread groups as the forward's output). D is kept in a
//      scratch array (B,NH,T) for kernel 2.
//   2) one block of 128 threads (4 warps) per (b, kv head, key s): the block sums over the group's query heads and
//      all t (rows i = h*T + t; warp w takes i = w, w+4, ...): dp is recomputed with the same lane arithmetic as
//      kernel 1 (same bits), ds = p (dp - D), then acck += ds q_row and accv += p dout_row in registers (lane holds
//      d = lane + 32k). The 4 warp partials are added in order, then dk += scale acck, dv += accv. Keys no query
//      attends are left untouched (as on the CPU).
//   The scratch (B*NH*T floats) is stream-ordered (cudaMallocAsync / cudaFreeAsync, graph-capturable); where the
//   device has no memory pools it falls back to cudaMalloc and a stream synchronize before cudaFree.
//
// Shared memory: forward (HD + S + 256) floats, backward kernel 1 the same; above 48 KiB (S > ~11.9k) the launcher
// opts in, up to the device's per-block limit (S up to ~57k on H100), else BadInput.
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/attention.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/kernel_helpers.cuh"

namespace dpo::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kRowWarps = kRowThreads / 32;
constexpr int kKeyThreads = 128;
constexpr int kKeyWarps = kKeyThreads / 32;

// Where row r = (b*T + t)*NH + h of q/out/dq/dout sits, and its kv head's key and value rows.
struct RowIndex {
  int64_t r, b, bt;
  int t, h, kvh;
};

// (32-bit index arithmetic: the grid has fewer than 2^31 blocks.)
__device__ __forceinline__ RowIndex row_index(int T, int NH, int group) {
  RowIndex x;
  const int r = int(blockIdx.x), bt = r / NH;
  x.r = r;
  x.h = r - bt * NH;
  x.bt = bt;
  x.b = bt / T;
  x.t = bt - int(x.b) * T;
  x.kvh = x.h / group;
  return x;
}

// sum_d a[d] * b[d] over one warp: lane sums d = lane, lane+32, ... in order, then the butterfly.
__device__ __forceinline__ float warp_dot(const float* a, const float* b, int HD, int lane) {
  float d = 0.0f;
  for (int i = lane; i < HD; i += 32) d = fmaf(a[i], b[i], d);
  return helpers::warp_sum(d);
}

// dst[d] (=, or += scale * when kAccumulate) sum_s c[s] * rows[s * stride + d] over s in [0, n) with c[s] != 0, by
// the block: P = NT / HD groups of HD threads (1 group looping over d when HD >= NT), group g summing s = g, g+P, ...
// in order, then the partials in order. All threads must call it (it holds a barrier).
template <bool kAccumulate>
__device__ __forceinline__ void block_weighted_rows(float* dst, const float* c /*smem (n)*/, const float* rows,
                                                    int64_t stride, int n, int HD, float scale, float* part) {
  const int tid = threadIdx.x;
  if (HD >= kRowThreads) {
    for (int d = tid; d < HD; d += kRowThreads) {
      float acc = 0.0f;
      for (int s = 0; s < n; s++) {
        const float w = c[s];
        if (w != 0.0f) acc = fmaf(w, rows[s * stride + d], acc);
      }
      if (kAccumulate) dst[d] += scale * acc;
      else dst[d] = acc;
    }
    return;
  }
  const int P = kRowThreads / HD;  // >= 1; P * HD <= kRowThreads
  const int g = tid / HD, d = tid - g * HD;
  float acc = 0.0f;
  if (g < P)
    for (int s = g; s < n; s += P) {
      const float w = c[s];
      if (w != 0.0f) acc = fmaf(w, rows[s * stride + d], acc);
    }
  part[tid] = acc;
  __syncthreads();
  if (tid < HD) {
    float tot = part[tid];
    for (int i = 1; i < P; i++) tot += part[i * HD + tid];
    if (kAccumulate) dst[tid] += scale * tot;
    else dst[tid] = tot;
  }
}

// ---- kernels ----

__global__ void __launch_bounds__(kRowThreads)
attention_forward_kernel(float* out /*(B,T,NH*HD)*/, float* probs /*(B,NH,T,S) or null*/,
                         const float* q /*(B,T,NH*HD)*/, const float* k /*(Bk,S,NKV*HD)*/,
                         const float* v /*(Bk,S,NKV*HD)*/, const int* qpos /*(B*T)*/,
                         const uint8_t* key_valid /*(B,S) or null*/, const int* seq /*(B*T) or null*/, int T, int S,
                         int NH, int NKV, int HD, int group, float scale) {
  extern __shared__ float smem[];
  float* qs = smem;       // (HD)
  float* sc = qs + HD;    // (S) scores, then exp, then p
  float* part = sc + S;   // (kRowThreads)
  __shared__ float red[32];
  const RowIndex ri = row_index(T, NH, group);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t kv_stride = int64_t(NKV) * HD;  // floats between consecutive keys of one head
  // The key store's sequence: b itself, or for decode the row's cache slot seq[b*T+t] (a negative one attends
  // nothing). Only the key base pointer changes, so decode runs the very arithmetic of the forward.
  const int64_t kb_seq = seq ? seq[ri.bt] : ri.b;
  const int64_t ks = kb_seq < 0 ? 0 : kb_seq;
  const float* kb = k + ks * S * kv_stride + int64_t(ri.kvh) * HD;
  const float* vb = v + ks * S * kv_stride + int64_t(ri.kvh) * HD;
  const uint8_t* valid = key_valid ? key_valid + ri.b * S : nullptr;
  const int last = kb_seq < 0 ? -1 : min(qpos[ri.bt], S - 1);  // causal: keys s <= qpos
  float* o = out + ri.r * HD;
  float* pr = probs ? probs + ((ri.b * NH + ri.h) * T + ri.t) * int64_t(S) : nullptr;
  const int np = pr ? S : last + 1;  // entries of sc (and probs) written below: past `last` only for probs' zeros

  for (int i = tid; i < HD; i += kRowThreads) qs[i] = q[ri.r * HD + i];
  __syncthreads();

  for (int s = warp; s <= last; s += kRowWarps) {  // warp-uniform loop and branch
    if (valid && !valid[s]) continue;
    const float d = warp_dot(qs, kb + s * kv_stride, HD, lane);
    if (lane == 0) sc[s] = d * scale;
  }
  __syncthreads();

  float mx = -INFINITY;
  int any = 0;
  for (int s = tid; s <= last; s += kRowThreads)
    if (!valid || valid[s]) {
      mx = fmaxf(mx, sc[s]);
      any = 1;
    }
  if (!__syncthreads_or(any)) {  // no attendable key: zeros (block-uniform exit)
    for (int d = tid; d < HD; d += kRowThreads) o[d] = 0.0f;
    if (pr)
      for (int s = tid; s < S; s += kRowThreads) pr[s] = 0.0f;
    return;
  }
  mx = helpers::block_max<kRowThreads>(mx, red);

  // softmax: exp(s - max), a fixed-order sum, then a division (fp32). Thread tid owns s = tid, tid+256, ...
  float sum = 0.0f;
  for (int s = tid; s <= last; s += kRowThreads)
    if (!valid || valid[s]) {
      const float e = expf(sc[s] - mx);
      sc[s] = e;
      sum += e;
    }
  sum = helpers::block_sum<kRowThreads>(sum, red);
  for (int s = tid; s < np; s += kRowThreads) {
    const float p = (s <= last && (!valid || valid[s])) ? sc[s] / sum : 0.0f;
    sc[s] = p;
    if (pr) pr[s] = p;
  }
  __syncthreads();

  // out = sum_s p_s v_s; masked keys (p == 0) are skipped, so garbage in padded cache slots never reaches out.
  block_weighted_rows<false>(o, sc, vb, kv_stride, last + 1, HD, 1.0f, part);
}

// Kernel 1 of the backward: per query row, D = sum_s p_s dp_s (saved when D_out is non-null) and
// dq += scale sum_s ds_s k_s (when dq is non-null).
__global__ void __launch_bounds__(kRowThreads)
attention_backward_dq_kernel(float* dq /*(B,T,NH*HD) or null*/, float* D_out /*(B,NH,T) or null*/,
                             const float* dout /*(B,T,NH*HD)*/, const float* probs /*(B,NH,T,S)*/,
                             const float* k /*(B,S,NKV*HD)*/, const float* v /*(B,S,NKV*HD)*/, int T, int S, int NH,
                             int NKV, int HD, int group, float scale) {
  extern __shared__ float smem[];
  float* dos = smem;      // (HD) dout row
  float* ds = dos + HD;   // (S) dp, then ds
  float* part = ds + S;   // (kRowThreads)
  __shared__ float red[32];
  const RowIndex ri = row_index(T, NH, group);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t kv_stride = int64_t(NKV) * HD;
  const float* kb = k + ri.b * S * kv_stride + int64_t(ri.kvh) * HD;
  const float* vb = v + ri.b * S * kv_stride + int64_t(ri.kvh) * HD;
  const int64_t prow = (ri.b * NH + ri.h) * T + ri.t;
  const float* pr = probs + prow * S;

  for (int i = tid; i < HD; i += kRowThreads) dos[i] = dout[ri.r * HD + i];
  __syncthreads();

  for (int s = warp; s < S; s += kRowWarps) {  // p == 0 (masked or underflowed): skipped, as on the CPU
    if (pr[s] == 0.0f) continue;
    const float d = warp_dot(dos, vb + s * kv_stride, HD, lane);
    if (lane == 0) ds[s] = d;
  }
  __syncthreads();

  float Dl = 0.0f;
  for (int s = tid; s < S; s += kRowThreads) {
    const float p = pr[s];
    if (p != 0.0f) Dl = fmaf(p, ds[s], Dl);
  }
  const float D = helpers::block_sum<kRowThreads>(Dl, red);
  if (D_out && tid == 0) D_out[prow] = D;
  if (!dq) return;  // block-uniform

  for (int s = tid; s < S; s += kRowThreads) {
    const float p = pr[s];
    ds[s] = p != 0.0f ? p * (ds[s] - D) : 0.0f;
  }
  __syncthreads();
  block_weighted_rows<true>(dq + ri.r * HD, ds, kb, kv_stride, S, HD, scale, part);
}

// Kernel 2 of the backward: per (b, kv head, key s), dk_s += scale sum_(h,t) ds q_row, dv_s += sum_(h,t) p dout_row.
// kDPL = values of d per lane (HD <= 32 * kDPL).
template <int kDPL>
__global__ void __launch_bounds__(kKeyThreads)
attention_backward_dkv_kernel(float* dk /*(B,S,NKV*HD) or null*/, float* dv /*(B,S,NKV*HD) or null*/,
                              const float* dout /*(B,T,NH*HD)*/, const float* probs /*(B,NH,T,S)*/,
                              const float* q /*(B,T,NH*HD)*/, const float* v /*(B,S,NKV*HD)*/,
                              const float* Dsum /*(B,NH,T)*/, int T, int S, int NH, int NKV, int HD, int group,
                              float scale) {
  __shared__ float ak[kKeyWarps][32 * kDPL], av[kKeyWarps][32 * kDPL];
  const int u = int(blockIdx.x), us = u / S;  // grid < 2^31 blocks
  const int s = u - us * S;
  const int kvh = us % NKV;
  const int64_t b = us / NKV;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t off = ((b * S + s) * NKV + kvh) * HD;

  float vr[kDPL], acck[kDPL], accv[kDPL];
#pragma unroll
  for (int j = 0; j < kDPL; j++) {
    const int d = lane + 32 * j;
    vr[j] = d < HD ? v[off + d] : 0.0f;
    acck[j] = 0.0f;
    accv[j] = 0.0f;
  }
  int touched = 0;
  const int n = group * T;
  for (int i = warp; i < n; i += kKeyWarps) {  // warp-uniform loop and branch
    const int h = kvh * group + i / T, t = i % T;
    const int64_t prow = (b * NH + h) * T + t;
    const float p = probs[prow * S + s];
    if (p == 0.0f) continue;
    const int64_t r = (b * T + t) * NH + h;
    const float* dor = dout + r * HD;
    const float* qr = q + r * HD;
    // dp = dout_row . v_s with kernel 1's arithmetic (d = lane, lane+32, ... in order, then the butterfly).
    float dp = 0.0f;
#pragma unroll
    for (int j = 0; j < kDPL; j++) {
      const int d = lane + 32 * j;
      if (d < HD) dp = fmaf(dor[d], vr[j], dp);
    }
    dp = helpers::warp_sum(dp);
    const float ds = p * (dp - Dsum[prow]);
#pragma unroll
    for (int j = 0; j < kDPL; j++) {
      const int d = lane + 32 * j;
      if (d < HD) {
        acck[j] = fmaf(ds, qr[d], acck[j]);
        accv[j] = fmaf(p, dor[d], accv[j]);
      }
    }
    touched = 1;
  }
#pragma unroll
  for (int j = 0; j < kDPL; j++) {
    ak[warp][lane + 32 * j] = acck[j];
    av[warp][lane + 32 * j] = accv[j];
  }
  if (!__syncthreads_or(touched)) return;  // barrier: ak/av visible; no query attends this key
  for (int d = tid; d < HD; d += kKeyThreads) {
    float sk = ak[0][d], sv = av[0][d];
#pragma unroll
    for (int w = 1; w < kKeyWarps; w++) {
      sk += ak[w][d];
      sv += av[w][d];
    }
    if (dk) dk[off + d] += scale * sk;
    if (dv) dv[off + d] += sv;
  }
}

// ---- launchers ----

void check_shape(const char* op, int B, int T, int S, int NH, int NKV, int HD) {
  if (NKV <= 0 || NH % NKV != 0) throw EngineError(ErrorCode::BadInput, "attention: NH must be a multiple of NKV");
  if (B < 0 || T < 0 || S < 0 || NH < 0 || HD <= 0)
    throw EngineError(ErrorCode::BadInput, std::string(op) + ": bad shape");
  // One block per query row and per (b, kv head, key): both counts must fit a 1-D grid (and 32-bit block indices).
  if (int64_t(B) * T * NH > INT32_MAX || int64_t(B) * NKV * S > INT32_MAX)
    throw EngineError(ErrorCode::BadInput, std::string(op) + ": too many rows for one launch");
}

// Stream-ordered scratch, released on every path (also when a launch throws).
struct Scratch {
  float* p = nullptr;
  bool async = false;
  cudaStream_t stream = nullptr;
  Scratch(size_t bytes, cudaStream_t st, const char* op) : stream(st) {
    if (cudaMallocAsync(reinterpret_cast<void**>(&p), bytes, st) == cudaSuccess) {
      async = true;
      return;
    }
    cudaGetLastError();  // clear; retry without memory pools
    p = nullptr;
    const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&p), bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw EngineError(ErrorCode::Oom, std::string(op) + ": cannot allocate " + std::to_string(bytes) +
                                            " bytes of GPU scratch (" + cudaGetErrorName(err) + ")");
    }
  }
  ~Scratch() {
    if (!p) return;
    if (async) {
      cudaFreeAsync(p, stream);
    } else {
      cudaStreamSynchronize(stream);
      cudaFree(p);
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace

// ---- entries ----

void launch_attention_forward(cudaStream_t stream, float* out, float* probs, const float* q, const float* k,
                              const float* v, const int* qpos, const uint8_t* key_valid, int B, int T, int S, int NH,
                              int NKV, int HD) {
  const char* op = "attention_forward";
  check_shape(op, B, T, S, NH, NKV, HD);
  const int64_t rows = int64_t(B) * T * NH;
  if (rows == 0) return;
  const float scale = float(1.0 / std::sqrt(double(HD)));  // as the CPU
  const size_t smem = sizeof(float) * (size_t(HD) + size_t(S) + kRowThreads);
  helpers::allow_dynamic_smem(attention_forward_kernel, smem, op, "S = " + std::to_string(S));
  attention_forward_kernel<<<unsigned(rows), kRowThreads, smem, stream>>>(out, probs, q, k, v, qpos, key_valid, nullptr,
                                                                          T, S, NH, NKV, HD, NH / NKV, scale);
  check_last_launch(op);
}

// Decode is the forward kernel with B = M, T = 1, qpos = pos, no key mask and the key store indexed through seq:
// row r's arithmetic is then exactly that of attention(B=1, T=1, S=pos[r]+1) on its sequence (the forward's result
// never depends on the store length past qpos), in one launch for all M rows.
void launch_attention_decode(cudaStream_t stream, float* out, const float* q, const float* kcache, const float* vcache,
                             const int* seq, const int* pos, int M, int S, int NH, int NKV, int HD) {
  const char* op = "attention_decode";
  check_shape(op, M, 1, S, NH, NKV, HD);
  const int64_t rows = int64_t(M) * NH;
  if (rows == 0) return;
  const float scale = float(1.0 / std::sqrt(double(HD)));
  const size_t smem = sizeof(float) * (size_t(HD) + size_t(S) + kRowThreads);
  helpers::allow_dynamic_smem(attention_forward_kernel, smem, op, "S = " + std::to_string(S));
  attention_forward_kernel<<<unsigned(rows), kRowThreads, smem, stream>>>(out, nullptr, q, kcache, vcache, pos, nullptr,
                                                                          seq, 1, S, NH, NKV, HD, NH / NKV, scale);
  check_last_launch(op);
}

void launch_attention_backward(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout,
                               const float* probs, const float* q, const float* k, const float* v, int B, int T, int S,
                               int NH, int NKV, int HD) {
  const char* op = "attention_backward";
  check_shape(op, B, T, S, NH, NKV, HD);
  if (HD > 256) throw EngineError(ErrorCode::BadInput, "attention_backward: head_dim above 256 is not supported");
  const int64_t rows = int64_t(B) * T * NH;
  const bool need_kv = (dk || dv) && S > 0;
  if (rows == 0 || (!dq && !need_kv)) return;
  const float scale = float(1.0 / std::sqrt(double(HD)));
  const int group = NH / NKV;
  const size_t smem = sizeof(float) * (size_t(HD) + size_t(S) + kRowThreads);
  helpers::allow_dynamic_smem(attention_backward_dq_kernel, smem, op, "S = " + std::to_string(S));

  if (!need_kv) {
    attention_backward_dq_kernel<<<unsigned(rows), kRowThreads, smem, stream>>>(dq, nullptr, dout, probs, k, v, T, S,
                                                                                NH, NKV, HD, group, scale);
    check_last_launch(op);
    return;
  }
  Scratch D(sizeof(float) * size_t(rows), stream, op);
  attention_backward_dq_kernel<<<unsigned(rows), kRowThreads, smem, stream>>>(dq, D.p, dout, probs, k, v, T, S, NH, NKV,
                                                                              HD, group, scale);
  check_last_launch(op);
  const unsigned keys = unsigned(int64_t(B) * NKV * S);
  if (HD <= 32)
    attention_backward_dkv_kernel<1>
        <<<keys, kKeyThreads, 0, stream>>>(dk, dv, dout, probs, q, v, D.p, T, S, NH, NKV, HD, group, scale);
  else if (HD <= 64)
    attention_backward_dkv_kernel<2>
        <<<keys, kKeyThreads, 0, stream>>>(dk, dv, dout, probs, q, v, D.p, T, S, NH, NKV, HD, group, scale);
  else if (HD <= 128)
    attention_backward_dkv_kernel<4>
        <<<keys, kKeyThreads, 0, stream>>>(dk, dv, dout, probs, q, v, D.p, T, S, NH, NKV, HD, group, scale);
  else
    attention_backward_dkv_kernel<8>
        <<<keys, kKeyThreads, 0, stream>>>(dk, dv, dout, probs, q, v, D.p, T, S, NH, NKV, HD, group, scale);
  check_last_launch(op);
}

}  // namespace dpo::cuda
