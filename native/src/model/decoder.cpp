// Decoder forward and backward: one transformer block at a time, with the attention step supplied by the caller
// (whole padded sequences, or single tokens against a KV cache). Residual stream and all non-4-bit math in fp32;
// LoRA runs in fp32 beside each adapted linear (docs/reference/precision.md, docs/reference/lora.md). Every step is a
// backend op on backend memory, so the same code runs on the CPU and on a GPU; only ids, positions and masks cross from
// the host.
#include "model/decoder.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "dpo/errors.h"
#include "model/last_block_rows.h"
#include "model/rope_table.h"
#include "train/full_grads.h"

namespace dpo {

void KvCache::init(Backend& be, int layers, int batch, int capacity, int kv_dim_) {
  B = batch;
  S = capacity;
  kv_dim = kv_dim_;
  k.clear();
  v.clear();
  for (int l = 0; l < layers; l++) {
    // Zeroed so that positions never written read as zeros, as on the CPU before this lived on a device.
    k.push_back(DeviceArray<float>::zeros(be, size_t(int64_t(B) * S * kv_dim)));
    v.push_back(DeviceArray<float>::zeros(be, size_t(int64_t(B) * S * kv_dim)));
  }
}

void BlockActs::resize(Backend& be, const ModelConfig& c, int M, bool training, size_t probs_size) {
  const size_t m = size_t(M), QD = size_t(c.n_heads) * c.head_dim, KVD = size_t(c.n_kv_heads) * c.head_dim;
  if (training) {
    x_mid.ensure(be, m * c.hidden);
    probs.ensure(be, probs_size);
  }
  xn1.ensure(be, m * c.hidden);
  rstd1.ensure(be, m);
  q.ensure(be, m * QD);
  k.ensure(be, m * KVD);
  if (c.qk_norm) {
    q_raw.ensure(be, m * QD);
    k_raw.ensure(be, m * KVD);
    rstd_q.ensure(be, m * c.n_heads);
    rstd_k.ensure(be, m * c.n_kv_heads);
  }
  v.ensure(be, m * KVD);
  att.ensure(be, m * QD);
  xn2.ensure(be, m * c.hidden);
  rstd2.ensure(be, m);
  gate.ensure(be, m * c.intermediate);
  up.ensure(be, m * c.intermediate);
  act.ensure(be, m * c.intermediate);
  proj.ensure(be, m * c.hidden);
}

namespace {

// attend(att (M,QD), probs or null, q (M,QD), k (M,KVD), v (M,KVD)): q and k already roped.
using AttendFn =
    std::function<void(int layer, float* att, float* probs, const float* q, const float* k, const float* v)>;

// LoRA on layer `l` (null = disabled), with dropout only while training.
struct LoraUse {
  const LoraAdapter* adapter = nullptr;
  float dropout = 0;
  std::mt19937* rng = nullptr;
  const LoraWeights* at(int layer, int kind) const { return adapter ? adapter->at(layer, kind) : nullptr; }
};

// The table of a call whose positions (host, n of them) reach max(pos): the model's own unless dynamic scaling makes
// it depend on the length.
const RopeTable& call_rope(const DeviceWeights& w, const int* pos, int n, RopeTable& scratch) {
  if (!rope_depends_on_length(w.config())) return w.rope;
  int longest = 0;
  for (int i = 0; i < n; i++) longest = std::max(longest, pos[i] + 1);
  scratch = rope_table(w.config(), longest);
  return scratch;
}

// out (M,C) = mid + down(swiglu(norm(mid))), mid = in + o(attn(norm(in))). pos: backend (M).
// In inference out may be in (the residual stream updated in place) and mid is out. In training the caller keeps `in`
// for the backward (the block's x_in, or the next layer's) and mid is a.x_mid, written by its own sum: no copies of
// the stream (two per block had been ~56 MB of memory traffic per 134M training step).
void block_forward(const float* in, float* out, const ModelConfig& c, const DeviceLayer& L, Backend& be, BlockActs& a,
                   const int* pos, int M, int layer, const LoraUse& lora, bool training, const RopeTable& rope,
                   const AttendFn& attend) {
  const int C = c.hidden, F = c.intermediate;
  // The layer `kind` of this block writing y: its base, adapter and (training) saved LoRA state.
  auto call = [&](int kind, float* y) {
    return LinearCall{y, &L.lin[size_t(kind)], lora.at(layer, kind), training ? &a.lora[size_t(kind)] : nullptr};
  };
  auto lin = [&](int kind, float* y, const float* in) {
    const LinearCall k = call(kind, y);
    linear_forward(be, y, in, M, *k.base, k.lora, lora.dropout, lora.rng, k.saved);
  };
  // Layers that read one input in a single linear_forward_many (its NF4 bases share bf16(x)).
  auto lin_many = [&](std::initializer_list<std::pair<int, float*>> outs, const float* in) {
    std::vector<LinearCall> calls;
    for (const auto& [kind, y] : outs) calls.push_back(call(kind, y));
    linear_forward_many(be, in, M, calls.data(), int(calls.size()), lora.dropout, lora.rng);
  };
  be.rmsnorm(a.xn1.get(), a.rstd1.get(), in, L.input_norm.get(), M, C, c.rms_norm_eps);
  // Qwen3 (qk_norm): RMSNorm over each head's HD values of the raw q and k (the row norm over M*H rows of HD), then
  // RoPE.
  lin_many({{kQ, c.qk_norm ? a.q_raw.get() : a.q.get()}, {kK, c.qk_norm ? a.k_raw.get() : a.k.get()}, {kV, a.v.get()}},
           a.xn1.get());
  if (c.qk_norm) {
    be.rmsnorm(a.q.get(), a.rstd_q.get(), a.q_raw.get(), L.q_norm.get(), M * c.n_heads, c.head_dim, c.rms_norm_eps);
    be.rmsnorm(a.k.get(), a.rstd_k.get(), a.k_raw.get(), L.k_norm.get(), M * c.n_kv_heads, c.head_dim, c.rms_norm_eps);
  }
  be.rope(a.q.get(), pos, M, c.n_heads, c.head_dim, rope);
  be.rope(a.k.get(), pos, M, c.n_kv_heads, c.head_dim, rope);
  attend(layer, a.att.get(), training ? a.probs.get() : nullptr, a.q.get(), a.k.get(), a.v.get());
  lin(kO, a.proj.get(), a.att.get());
  float* mid = training ? a.x_mid.get() : out;
  be.add(mid, in, a.proj.get(), int64_t(M) * C);

  be.rmsnorm(a.xn2.get(), a.rstd2.get(), mid, L.post_norm.get(), M, C, c.rms_norm_eps);
  lin_many({{kGate, a.gate.get()}, {kUp, a.up.get()}}, a.xn2.get());
  be.swiglu(a.act.get(), a.gate.get(), a.up.get(), M, F);
  lin(kDown, a.proj.get(), a.act.get());
  be.add(out, mid, a.proj.get(), int64_t(M) * C);
}

// The rows of a block's output that carry a gradient, when they are fewer than the backward's rows (the last block of a
// chained step: only the scored rows' final hidden states are read, docs/performance.md#last-layer-only-where-scored).
// The MLP, o_proj and q input-gradient products run on those rows, gathered with the activations and LoRA state they
// read; every other row's gradient there is zero, and so is what those products would have made of it.
struct GradRows {
  int n = 0;
  DeviceArray<int> rows;  // (n) ascending, distinct

  // src rows `rows` (width floats each), gathered.
  DeviceArray<float> gather(Backend& be, const float* src, int width) const {
    DeviceArray<float> out(be, size_t(n) * size_t(width));
    be.gather_rows(out.get(), src, rows.get(), n, width);
    return out;
  }
};

// dx (M,C): gradient of the block output on entry, of the block input on return, unless want_input_grad is false (the
// first block of adapter-only training, where nothing below takes a gradient): then dx is left as the gradient after
// the MLP and the input gradients of q, k, v (and k's whole chain when k has no adapter) are not formed.
// LoRA gradients accumulate.
// R <= B * T: the rows the row-wise ops run on (TrainActs::backward_rows); the others keep a zero gradient.
// out_rows (or null): the only rows whose output gradient may be nonzero (GradRows; adapter-only training without
// LoRA dropout). The bits are those of the whole rows': the products skipped would only have added zeros.
void block_backward(float* dx, const ModelConfig& c, const DeviceLayer& L, Backend& be, BlockActs& a, const int* pos,
                    int B, int T, int R, int layer, LoraAdapter* lora, LayerGrads* full, const RopeTable& rope,
                    bool want_input_grad, const SegmentPlan* segments, const GradRows* out_rows = nullptr) {
  const int M = B * T, C = c.hidden, F = c.intermediate;
  const int QD = c.n_heads * c.head_dim, KVD = c.n_kv_heads * c.head_dim;
  const float p = lora ? lora->config.dropout : 0.0f;
  if (out_rows && (full || p != 0.0f))
    fail(ErrorCode::Internal, "block_backward: output rows are for adapter-only training without LoRA dropout");
  auto zeros = [&be](int64_t n) { return DeviceArray<float>::zeros(be, size_t(n)); };
  // Scratch that its first op overwrites (the bits of a zero-filled one, without the fill: ~280 MB of memory traffic
  // per training step at 134M, docs/performance.md#the-steps-between-the-matmuls).
  auto fresh = [&be](int64_t n) { return DeviceArray<float>(be, size_t(n)); };
  // din_fresh: din holds nothing yet, and this product is its first term.
  auto lin_back = [&](int kind, float* din, const float* dy, const float* in, bool din_fresh = false) {
    linear_backward(be, din, dy, in, R, L.lin[size_t(kind)], lora ? lora->at(layer, kind) : nullptr, p,
                    a.lora[size_t(kind)], full ? &full->lin[size_t(kind)] : nullptr, din_fresh);
  };
  // The same on the output rows only: dy, in and din are gathered (G rows), and so is the LoRA state.
  const int G = out_rows ? out_rows->n : R;
  auto lin_back_out = [&](int kind, float* din, const float* dy, const float* in, bool din_fresh = false) {
    if (!out_rows) return lin_back(kind, din, dy, in, din_fresh);
    LoraWeights* w = lora ? lora->at(layer, kind) : nullptr;
    LoraSaved saved;  // the forward's x . A^T on those rows (no dropout: nothing else is kept)
    if (w) saved.u = out_rows->gather(be, a.lora[size_t(kind)].u.get(), w->r);
    linear_backward(be, din, dy, in, G, L.lin[size_t(kind)], w, p, saved, nullptr, din_fresh);
  };
  // An activation (width floats per row) on the rows lin_back_out runs on: itself, or its rows gathered into `keep`.
  auto out_view = [&](const DeviceArray<float>& act, int width, DeviceArray<float>& keep) -> const float* {
    if (!out_rows) return act.get();
    keep = out_rows->gather(be, act.get(), width);
    return keep.get();
  };
  // dy: the block output's gradient on those rows (dx itself, or its rows gathered and scattered back below).
  DeviceArray<float> dx_out;
  if (out_rows) dx_out = out_rows->gather(be, dx, C);
  float* dy = out_rows ? dx_out.get() : dx;
  // MLP: x_out = x_mid + down(silu(gate(xn2)) * up(xn2))
  {
    DeviceArray<float> dact = fresh(int64_t(G) * F), dgate = fresh(int64_t(G) * F), dup = fresh(int64_t(G) * F);
    DeviceArray<float> act_rows, gate_rows, up_rows, xn2_rows, mid_rows, rstd2_rows;
    lin_back_out(kDown, dact.get(), dy, out_view(a.act, F, act_rows), /*din_fresh=*/true);
    act_rows = DeviceArray<float>();
    be.swiglu_backward_overwrite(dgate.get(), dup.get(), dact.get(), out_view(a.gate, F, gate_rows),
                                 out_view(a.up, F, up_rows), G, F);
    // GPU memory is the limit at 7B: free each scratch as soon as it is spent.
    dact = DeviceArray<float>(), gate_rows = DeviceArray<float>(), up_rows = DeviceArray<float>();
    DeviceArray<float> dxn = fresh(int64_t(G) * C);
    const float* xn2 = out_view(a.xn2, C, xn2_rows);
    lin_back_out(kGate, dxn.get(), dgate.get(), xn2, /*din_fresh=*/true);
    lin_back_out(kUp, dxn.get(), dup.get(), xn2);
    be.rmsnorm_backward(dy, full ? full->post_norm.get() : nullptr, dxn.get(), out_view(a.x_mid, C, mid_rows),
                        L.post_norm.get(), out_view(a.rstd2, 1, rstd2_rows), G, C);
  }
  // Attention: x_mid = x_in + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1)))
  const bool want_dk = want_input_grad || (lora && lora->at(layer, kK));
  // attention_backward accumulates into zeros; a chained row's SegmentPlan::backward writes every row itself.
  auto attention_grad = [&](int64_t n) { return segments ? fresh(n) : zeros(n); };
  DeviceArray<float> datt = out_rows ? zeros(int64_t(M) * QD) : fresh(int64_t(M) * QD),
                     dq = attention_grad(int64_t(M) * QD), dv = attention_grad(int64_t(M) * KVD), dk;
  if (want_dk) dk = attention_grad(int64_t(M) * KVD);
  if (out_rows) {
    DeviceArray<float> datt_out = fresh(int64_t(G) * QD), att_rows;
    lin_back_out(kO, datt_out.get(), dy, out_view(a.att, QD, att_rows), /*din_fresh=*/true);
    be.scatter_rows(datt.get(), out_rows->rows.get(), datt_out.get(), G, QD);
    be.scatter_rows(dx, out_rows->rows.get(), dy, G, C);  // dx: the gradient at x_mid on every row
    dx_out = DeviceArray<float>();
  } else {
    if (R < M) be.fill_zero(datt.get() + int64_t(R) * QD, size_t(M - R) * QD * sizeof(float));  // rows without gradient
    lin_back(kO, datt.get(), dx, a.att.get(), /*din_fresh=*/true);
  }
  if (segments)
    segments->backward(be, c, dq.get(), dk.get(), dv.get(), datt.get(), a.probs.get(), a.q.get(), a.k.get(), a.v.get());
  else
    be.attention_backward(dq.get(), dk.get(), dv.get(), datt.get(), a.probs.get(), a.q.get(), a.k.get(), a.v.get(), B,
                          T, T, c.n_heads, c.n_kv_heads, c.head_dim);
  be.rope_backward(dq.get(), pos, R, c.n_heads, c.head_dim, rope);
  if (want_dk) be.rope_backward(dk.get(), pos, R, c.n_kv_heads, c.head_dim, rope);
  if (c.qk_norm) {
    // Through the per-head norms: dq, dk become the gradients of the raw projections.
    DeviceArray<float> dq_raw = zeros(int64_t(R) * QD);
    be.rmsnorm_backward(dq_raw.get(), full ? full->q_norm.get() : nullptr, dq.get(), a.q_raw.get(), L.q_norm.get(),
                        a.rstd_q.get(), R * c.n_heads, c.head_dim);
    dq = std::move(dq_raw);
    if (want_dk) {
      DeviceArray<float> dk_raw = zeros(int64_t(R) * KVD);
      be.rmsnorm_backward(dk_raw.get(), full ? full->k_norm.get() : nullptr, dk.get(), a.k_raw.get(), L.k_norm.get(),
                          a.rstd_k.get(), R * c.n_kv_heads, c.head_dim);
      dk = std::move(dk_raw);
    }
  }
  DeviceArray<float> dxn;
  if (out_rows) {
    // q's input gradient on the output rows (every other row's dq is zero), scattered into zeros: the bits of the
    // whole product, whose other rows would be sums of zeros.
    if (want_input_grad) dxn = zeros(int64_t(R) * C);
    const DeviceArray<float> dq_out = out_rows->gather(be, dq.get(), QD);
    DeviceArray<float> dxn_out, xn1_rows;
    if (want_input_grad) dxn_out = fresh(int64_t(G) * C);
    lin_back_out(kQ, dxn_out.get(), dq_out.get(), out_view(a.xn1, C, xn1_rows), /*din_fresh=*/true);
    if (want_input_grad) be.scatter_rows(dxn.get(), out_rows->rows.get(), dxn_out.get(), G, C);
  } else {
    if (want_input_grad) dxn = fresh(int64_t(R) * C);
    lin_back(kQ, dxn.get(), dq.get(), a.xn1.get(), /*din_fresh=*/true);
  }
  if (want_dk) lin_back(kK, dxn.get(), dk.get(), a.xn1.get());
  lin_back(kV, dxn.get(), dv.get(), a.xn1.get());
  if (want_input_grad)
    be.rmsnorm_backward(dx, full ? full->input_norm.get() : nullptr, dxn.get(), a.x_in.get(), L.input_norm.get(),
                        a.rstd1.get(), R, C);
}

template <typename T>
DeviceArray<T> upload(Backend& be, const T* host, size_t n) {
  return DeviceArray<T>::from_host(be, host, n);
}

// Whole-sequence attention over (B, T) rows, with the packed layout's skipped keys when key_skip (backend) is given.
void attend_rows(Backend& be, const ModelConfig& c, float* att, float* probs, const float* q, const float* k,
                 const float* v, const int* pos, const uint8_t* valid, const int* key_skip, int B, int T) {
  if (key_skip)
    be.attention_key_skip(att, probs, q, k, v, pos, valid, key_skip, B, T, T, c.n_heads, c.n_kv_heads, c.head_dim);
  else be.attention(att, probs, q, k, v, pos, valid, B, T, T, c.n_heads, c.n_kv_heads, c.head_dim);
}

// The longest sequence a call holds: T, or with rows of several sequences side by side (packed or chained) max(pos)
// + 1.
int call_length(const int* pos, int M, int T, bool side_by_side) {
  if (!side_by_side) return T;
  int longest = 0;
  for (int i = 0; i < M; i++) longest = std::max(longest, pos[i] + 1);
  return longest;
}

DeviceArray<int> upload_key_skip(Backend& be, const int* key_skip, int M) {
  if (!key_skip) return {};
  if (!be.has_attention_key_skip())
    fail(ErrorCode::Internal, "packed answer pairs need Backend::attention_key_skip, which this backend lacks");
  return upload(be, key_skip, size_t(kKeySkipInts) * M);
}

}  // namespace

void decoder_forward(float* hidden_out, const DeviceWeights& w, Backend& be, const int* ids, const int* pos,
                     const uint8_t* key_valid, int B, int T, KvCache* cache, const LoraAdapter* lora,
                     const int* key_skip, const std::vector<int>* only_rows) {
  const ModelConfig& c = w.config();
  const int KVD = c.n_kv_heads * c.head_dim, M = B * T;
  if (key_skip && cache) fail(ErrorCode::Internal, "a prefill cannot use packed answer pairs");
  if (only_rows && cache) fail(ErrorCode::Internal, "a prefill keeps every row");
  check_sliding_window(c, call_length(pos, M, T, key_skip != nullptr), "sequence");
  DeviceArray<int> skip_d = upload_key_skip(be, key_skip, M);
  DeviceArray<float> x(be, size_t(M) * c.hidden);
  embed_tokens(x.get(), *w.host, be, ids, M);
  DeviceArray<int> pos_d = upload(be, pos, size_t(M));
  DeviceArray<uint8_t> valid_d = upload(be, key_valid, size_t(M));
  // Prefill: position t of sequence b goes to cache row b*S + t (one scatter per layer for keys, one for values).
  DeviceArray<int> cache_rows;
  if (cache) {
    if (T > cache->S)
      fail(ErrorCode::Internal,
           "KV cache holds " + std::to_string(cache->S) + " positions, prefill has " + std::to_string(T));
    std::vector<int> rows(static_cast<size_t>(M));
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) rows[size_t(b) * T + t] = b * cache->S + t;
    cache_rows = upload(be, rows.data(), rows.size());
  }
  BlockActs a;
  a.resize(be, c, M, false, 0);
  const LoraUse use{lora, 0.0f, nullptr};
  RopeTable scratch;
  const RopeTable& rope = call_rope(w, pos, M, scratch);
  const AttendFn attend = [&](int layer, float* att, float*, const float* q, const float* k, const float* v) {
    attend_rows(be, c, att, nullptr, q, k, v, pos_d.get(), valid_d.get(), skip_d.get(), B, T);
    if (!cache) return;
    be.scatter_rows(cache->k[size_t(layer)].get(), cache_rows.get(), k, M, KVD);
    be.scatter_rows(cache->v[size_t(layer)].get(), cache_rows.get(), v, M, KVD);
  };
  const int blocks_on_every_row = only_rows ? c.n_layers - 1 : c.n_layers;
  for (int l = 0; l < blocks_on_every_row; l++)
    block_forward(x.get(), x.get(), c, w.layers[size_t(l)], be, a, pos_d.get(), M, l, use, false, rope, attend);
  if (only_rows) {
    a = BlockActs();  // the last block allocates for its own row sets
    last_block_rows(hidden_out, x.get(), w, be, lora, pos, pos_d.get(), valid_d.get(), key_skip, B, T, *only_rows,
                    rope);
    return;
  }
  be.rmsnorm(hidden_out, nullptr, x.get(), w.final_norm.get(), M, c.hidden, c.rms_norm_eps);
}

void DecodeInputs::set(const DeviceWeights& w, Backend& be, const KvCache& cache, const int* seq, const int* ids,
                       const int* pos, int rows) {
  const ModelConfig& c = w.config();
  if (rows != M || x.empty()) {
    M = rows;
    x = DeviceArray<float>(be, size_t(M) * c.hidden);
    meta = DeviceArray<int>(be, size_t(3) * M);
    acts = BlockActs();
    acts.resize(be, c, M, false, 0);
  }
  embed_tokens(x.get(), *w.host, be, ids, M);
  std::vector<int> m(size_t(3) * M);
  for (int r = 0; r < M; r++) {
    if (pos[r] < 0 || pos[r] >= cache.S || seq[r] < 0 || seq[r] >= cache.B)
      fail(ErrorCode::Internal, "decode step outside the KV cache");
    check_sliding_window(c, pos[r] + 1, "generated sequence");
    m[size_t(r)] = pos[r];
    m[size_t(M + r)] = seq[r];
    m[size_t(2 * M + r)] = seq[r] * cache.S + pos[r];
  }
  meta.upload(m);  // one upload per step: positions, sequences and cache rows side by side
  RopeTable scratch;
  rope = call_rope(w, pos, M, scratch);
}

void decode_step_body(float* hidden_out, const DeviceWeights& w, Backend& be, KvCache& cache, DecodeInputs& in,
                      const LoraAdapter* lora) {
  const ModelConfig& c = w.config();
  const int M = in.M, KVD = c.n_kv_heads * c.head_dim;
  const int* pos_d = in.meta.get();
  const int* seq_d = pos_d + M;
  const int* rows_d = pos_d + 2 * M;
  const LoraUse use{lora, 0.0f, nullptr};
  const AttendFn attend = [&](int layer, float* att, float*, const float* q, const float* k, const float* v) {
    float* kc = cache.k[size_t(layer)].get();
    float* vc = cache.v[size_t(layer)].get();
    be.scatter_rows(kc, rows_d, k, M, KVD);
    be.scatter_rows(vc, rows_d, v, M, KVD);
    // Each row attends to its own sequence's cache, positions 0..pos[r], with the full-sequence arithmetic.
    be.attention_decode(att, q, kc, vc, seq_d, pos_d, M, cache.S, c.n_heads, c.n_kv_heads, c.head_dim);
  };
  for (int l = 0; l < c.n_layers; l++)
    block_forward(in.x.get(), in.x.get(), c, w.layers[size_t(l)], be, in.acts, pos_d, M, l, use, false, in.rope,
                  attend);
  be.rmsnorm(hidden_out, nullptr, in.x.get(), w.final_norm.get(), M, c.hidden, c.rms_norm_eps);
}

void decoder_step(float* hidden_out, const DeviceWeights& w, Backend& be, KvCache& cache, const int* seq,
                  const int* ids, const int* pos, int M, const LoraAdapter* lora) {
  DecodeInputs in;
  in.set(w, be, cache, seq, ids, pos, M);
  decode_step_body(hidden_out, w, be, cache, in, lora);
}

uint64_t block_activation_bytes(const ModelConfig& c, int B, int T) {
  const uint64_t M = uint64_t(B) * T, C = uint64_t(c.hidden), F = uint64_t(c.intermediate);
  const uint64_t QD = uint64_t(c.n_heads) * c.head_dim, KVD = uint64_t(c.n_kv_heads) * c.head_dim;
  const uint64_t norms = c.qk_norm ? QD + KVD + uint64_t(c.n_heads) + uint64_t(c.n_kv_heads) : 0;
  const uint64_t floats = M * (5 * C + 2 * QD + 2 * KVD + 3 * F + 2 + norms) + uint64_t(B) * c.n_heads * T * T;
  return floats * sizeof(float);
}

void check_sliding_window(const ModelConfig& c, int length, const char* what) {
  if (c.sliding_window <= 0 || length <= c.sliding_window) return;
  fail(ErrorCode::BadInput, std::string("a ") + what + " of " + std::to_string(length) +
                                " tokens is longer than this model's sliding window of " +
                                std::to_string(c.sliding_window) +
                                " (config.json sliding_window): the engine attends to every earlier token, which "
                                "equals the model's windowed attention only up to the window. Shorten the prompt or "
                                "answers, or lower max-new-tokens");
}

namespace {

bool last_block_grad_rows_enabled() {
  const char* env = std::getenv("DPO_LAST_BLOCK_GRAD_ROWS");
  if (!env || !*env || std::string(env) == "1") return true;
  if (std::string(env) == "0") return false;
  fail(ErrorCode::BadInput, std::string("DPO_LAST_BLOCK_GRAD_ROWS must be 0 or 1, got '") + env + "'");
}

bool choose_recompute(const ModelConfig& c, int B, int T) {
  const char* env = std::getenv("DPO_RECOMPUTE");
  if (env && std::string(env) == "always") return true;
  if (env && std::string(env) == "never") return false;
  return block_activation_bytes(c, B, T) * uint64_t(c.n_layers) > kKeptActivationBudget;
}

}  // namespace

void decoder_forward_train(float* hidden_out, TrainActs& acts, const DeviceWeights& w, Backend& be, const int* ids,
                           const int* pos, const uint8_t* key_valid, int B, int T, LoraAdapter* lora,
                           const int* key_skip, const SegmentPlan* segments) {
  const ModelConfig& c = w.config();
  const int M = B * T;
  if (segments && (B != 1 || T != segments->rows() || key_skip))
    fail(ErrorCode::Internal, "decoder_forward_train: a segmented call is one row of the plan's rows, no key_skip");
  acts.B = B;
  acts.T = T;
  acts.segments = segments;
  acts.recompute = !segments && choose_recompute(c, B, T);
  check_sliding_window(c, call_length(pos, M, T, key_skip || segments), "sequence");
  acts.key_skip = upload_key_skip(be, key_skip, M);
  acts.ids.assign(ids, ids + M);
  acts.pos = upload(be, pos, size_t(M));
  {
    RopeTable scratch;
    acts.rope = call_rope(w, pos, M, scratch);
  }
  acts.valid = upload(be, key_valid, size_t(M));
  acts.blocks.clear();
  acts.blocks.resize(size_t(c.n_layers));
  const size_t probs_size = segments ? segments->probs_floats(c.n_heads) : size_t(B) * c.n_heads * T * T;
  // The residual stream: each block reads its input from its own x_in (kept for the backward) and writes its output
  // into the next block's x_in, the last one into x_final (the final-norm input).
  const size_t MC = size_t(M) * c.hidden;
  acts.x_final.ensure(be, MC);
  acts.blocks[0].x_in.ensure(be, MC);
  embed_tokens(acts.blocks[0].x_in.get(), *w.host, be, ids, M);
  const LoraUse use{lora, lora ? lora->config.dropout : 0.0f, lora ? &lora->dropout_rng : nullptr};
  const AttendFn attend = [&](int, float* att, float* probs, const float* q, const float* k, const float* v) {
    if (segments) return segments->forward(be, c, att, probs, q, k, v);
    attend_rows(be, c, att, probs, q, k, v, acts.pos.get(), acts.valid.get(), acts.key_skip.get(), B, T);
  };
  BlockActs scratch;  // recompute: one block's activations at a time
  for (int l = 0; l < c.n_layers; l++) {
    BlockActs& kept = acts.blocks[size_t(l)];
    BlockActs& a = acts.recompute ? scratch : kept;
    a.resize(be, c, M, true, probs_size);
    float* out = acts.x_final.get();
    if (l + 1 < c.n_layers) {
      acts.blocks[size_t(l) + 1].x_in.ensure(be, MC);
      out = acts.blocks[size_t(l) + 1].x_in.get();
    }
    block_forward(kept.x_in.get(), out, c, w.layers[size_t(l)], be, a, acts.pos.get(), M, l, use, true, acts.rope,
                  attend);
    if (acts.recompute)
      for (int k = 0; k < kNumLinear; k++) kept.lora[size_t(k)].kept = std::move(scratch.lora[size_t(k)].kept);
  }
  acts.rstd_final.ensure(be, size_t(M));
  be.rmsnorm(hidden_out, acts.rstd_final.get(), acts.x_final.get(), w.final_norm.get(), M, c.hidden, c.rms_norm_eps);
}

void decoder_backward(const float* dhidden, TrainActs& acts, const DeviceWeights& w, Backend& be, LoraAdapter* lora,
                      FullGrads* full) {
  const ModelConfig& c = w.config();
  const int M = acts.B * acts.T;
  if (acts.backward_rows < 0 || acts.backward_rows > M || (acts.backward_rows > 0 && !acts.segments))
    fail(ErrorCode::Internal, "decoder_backward: backward_rows is for a chained row, within its rows");
  const int R = acts.backward_rows > 0 ? acts.backward_rows : M;
  const size_t MC = size_t(M) * c.hidden;
  GradRows last_rows;  // the last block's output rows with a gradient (TrainActs::output_grad_rows)
  const std::vector<int>& out = acts.output_grad_rows;
  if (!out.empty() && !acts.segments)
    fail(ErrorCode::Internal, "decoder_backward: output_grad_rows is for a chained row");
  check_ascending_rows(out, R, "decoder_backward: output_grad_rows");
  // A chained row never recomputes its blocks (decoder_forward_train keeps them), so that needs no test here.
  const bool compact_last = !out.empty() && int(out.size()) < R && !full && lora && lora->config.dropout == 0.0f &&
                            last_block_grad_rows_enabled();
  if (compact_last) {
    last_rows.n = int(out.size());
    last_rows.rows = upload(be, out.data(), out.size());
  }
  DeviceArray<float> dx = DeviceArray<float>::zeros(be, MC);
  be.rmsnorm_backward(dx.get(), full ? full->final_norm.get() : nullptr, dhidden, acts.x_final.get(),
                      w.final_norm.get(), acts.rstd_final.get(), R, c.hidden);
  BlockActs scratch;
  DeviceArray<float> x;
  for (int l = c.n_layers - 1; l >= 0; l--) {
    BlockActs& kept = acts.blocks[size_t(l)];
    BlockActs* a = &kept;
    if (acts.recompute) {
      // The block again from its input, with the masks of the first pass (no generator: nothing new is drawn).
      scratch.resize(be, c, M, true, size_t(acts.B) * c.n_heads * acts.T * acts.T);
      for (int k = 0; k < kNumLinear; k++) scratch.lora[size_t(k)].kept = std::move(kept.lora[size_t(k)].kept);
      scratch.x_in = std::move(kept.x_in);
      x.ensure(be, MC);  // the block's output again, which nothing reads
      const LoraUse replay{lora, lora ? lora->config.dropout : 0.0f, nullptr};
      const AttendFn attend = [&](int, float* att, float* probs, const float* q, const float* k, const float* v) {
        attend_rows(be, c, att, probs, q, k, v, acts.pos.get(), acts.valid.get(), acts.key_skip.get(), acts.B, acts.T);
      };
      block_forward(scratch.x_in.get(), x.get(), c, w.layers[size_t(l)], be, scratch, acts.pos.get(), M, l, replay,
                    true, acts.rope, attend);
      a = &scratch;
    }
    // The gradient w.r.t. the block input = residual path (dx unchanged) + what block_backward adds.
    // Adapter-only training wants no gradient below the first block (the embedding is frozen).
    const bool want_input_grad = l > 0 || full;
    const bool last = l == c.n_layers - 1;
    block_backward(dx.get(), c, w.layers[size_t(l)], be, *a, acts.pos.get(), acts.B, acts.T, R, l, lora,
                   full ? &full->layers[size_t(l)] : nullptr, acts.rope, want_input_grad, acts.segments,
                   last && compact_last ? &last_rows : nullptr);
    kept = BlockActs();  // spent: release its memory before the next layer's
  }
  if (full) {
    // Embedding rows gather their tokens' gradients (in row order, so the sum is deterministic).
    DeviceArray<int> ids = upload(be, acts.ids.data(), acts.ids.size());
    be.embedding_backward(full->embed.get(), dx.get(), ids.get(), M, c.hidden);
  }
}

}  // namespace dpo
