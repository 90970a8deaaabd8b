// The last block at the kept rows only (docs/performance.md#last-layer-only-where-scored). The ops are the ones
// block_forward (decoder.cpp) runs, in the same order and with the same arguments per row; only the row sets differ:
// keys and values over every row, everything downstream of them over the kept rows. Attention runs once per decoder
// row with that row's kept queries against all of its keys (the query and key counts of Backend::attention differ, as
// in a prefill against a longer key store), so each query sees the keys it saw in the full block, in the same order.
#include "model/last_block_rows.h"

#include <algorithm>
#include <string>

#include "dpo/errors.h"

namespace dpo {

std::vector<int> rows_once(std::vector<int> rows) {
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

void check_ascending_rows(const std::vector<int>& rows, int limit, const char* what) {
  for (size_t i = 0; i < rows.size(); i++)
    if (rows[i] < 0 || rows[i] >= limit || (i > 0 && rows[i] <= rows[i - 1]))
      fail(ErrorCode::Internal, std::string(what) + " row " + std::to_string(i) + " is out of order or range");
}

void last_block_rows(float* hidden_out, const float* x, const DeviceWeights& w, Backend& be, const LoraAdapter* lora,
                     const int* pos, const int* pos_dev, const uint8_t* valid_dev, const int* key_skip, int B, int T,
                     const std::vector<int>& rows, const RopeTable& rope) {
  const ModelConfig& c = w.config();
  const int layer = c.n_layers - 1, M = B * T, R = int(rows.size());
  const int C = c.hidden, F = c.intermediate, QD = c.n_heads * c.head_dim, KVD = c.n_kv_heads * c.head_dim;
  const DeviceLayer& L = w.layers[size_t(layer)];
  check_ascending_rows(rows, M, "last_block_rows: kept");
  auto lin = [&](int kind, float* y, const float* in, int n) {
    linear_forward(be, y, in, n, L.lin[size_t(kind)], lora ? lora->at(layer, kind) : nullptr, 0.0f, nullptr, nullptr);
  };
  auto array = [&be](int64_t n) { return DeviceArray<float>(be, size_t(n)); };
  // A q or k projection of n rows; Qwen3 norms each of its heads first, as block_forward does.
  auto project = [&](int kind, float* out, const float* in, int n, int heads, const float* head_norm) {
    if (!c.qk_norm) return lin(kind, out, in, n);
    DeviceArray<float> raw = array(int64_t(n) * heads * c.head_dim);
    lin(kind, raw.get(), in, n);
    be.rmsnorm(out, nullptr, raw.get(), head_norm, n * heads, c.head_dim, c.rms_norm_eps);
  };

  // Every row: the attention input and its keys and values.
  DeviceArray<float> xn = array(int64_t(M) * C), k = array(int64_t(M) * KVD), v = array(int64_t(M) * KVD);
  be.rmsnorm(xn.get(), nullptr, x, L.input_norm.get(), M, C, c.rms_norm_eps);
  project(kK, k.get(), xn.get(), M, c.n_kv_heads, L.k_norm.get());
  lin(kV, v.get(), xn.get(), M);
  be.rope(k.get(), pos_dev, M, c.n_kv_heads, c.head_dim, rope);

  // The kept rows: their positions and skipped keys, gathered on the host.
  std::vector<int> kept_pos(static_cast<size_t>(R)), kept_skip(static_cast<size_t>(kKeySkipInts) * R, 0);
  for (int i = 0; i < R; i++) {
    const int r = rows[size_t(i)];
    kept_pos[size_t(i)] = pos[r];
    if (key_skip) std::copy_n(key_skip + size_t(kKeySkipInts) * r, kKeySkipInts, kept_skip.begin() + kKeySkipInts * i);
  }
  const DeviceArray<int> rows_d = DeviceArray<int>::from_host(be, rows),
                         pos_d = DeviceArray<int>::from_host(be, kept_pos),
                         skip_d = key_skip ? DeviceArray<int>::from_host(be, kept_skip) : DeviceArray<int>();
  DeviceArray<float> xr = array(int64_t(R) * C), xnr = array(int64_t(R) * C), q = array(int64_t(R) * QD);
  be.gather_rows(xr.get(), x, rows_d.get(), R, C);
  be.gather_rows(xnr.get(), xn.get(), rows_d.get(), R, C);
  xn = DeviceArray<float>();
  project(kQ, q.get(), xnr.get(), R, c.n_heads, L.q_norm.get());
  be.rope(q.get(), pos_d.get(), R, c.n_heads, c.head_dim, rope);

  // Attention per decoder row b: its kept queries [i0, i1) against its T keys.
  DeviceArray<float> att = array(int64_t(R) * QD);
  for (int i0 = 0, i1 = 0; i0 < R; i0 = i1) {
    const int b = rows[size_t(i0)] / T;
    while (i1 < R && rows[size_t(i1)] / T == b) i1++;
    const size_t kv_off = size_t(b) * T * KVD, q_off = size_t(i0) * QD;
    if (key_skip)
      be.attention_key_skip(att.get() + q_off, nullptr, q.get() + q_off, k.get() + kv_off, v.get() + kv_off,
                            pos_d.get() + i0, valid_dev + size_t(b) * T, skip_d.get() + size_t(kKeySkipInts) * i0, 1,
                            i1 - i0, T, c.n_heads, c.n_kv_heads, c.head_dim);
    else
      be.attention(att.get() + q_off, nullptr, q.get() + q_off, k.get() + kv_off, v.get() + kv_off, pos_d.get() + i0,
                   valid_dev + size_t(b) * T, 1, i1 - i0, T, c.n_heads, c.n_kv_heads, c.head_dim);
  }
  k = DeviceArray<float>(), v = DeviceArray<float>(), q = DeviceArray<float>();

  // The rest of the block and the final norm, on the kept rows.
  DeviceArray<float> proj = array(int64_t(R) * C);
  lin(kO, proj.get(), att.get(), R);
  be.add(xr.get(), xr.get(), proj.get(), int64_t(R) * C);
  be.rmsnorm(xnr.get(), nullptr, xr.get(), L.post_norm.get(), R, C, c.rms_norm_eps);
  DeviceArray<float> gate = array(int64_t(R) * F), up = array(int64_t(R) * F), act = array(int64_t(R) * F);
  lin(kGate, gate.get(), xnr.get(), R);
  lin(kUp, up.get(), xnr.get(), R);
  be.swiglu(act.get(), gate.get(), up.get(), R, F);
  lin(kDown, proj.get(), act.get(), R);
  be.add(xr.get(), xr.get(), proj.get(), int64_t(R) * C);
  be.rmsnorm(hidden_out, nullptr, xr.get(), w.final_norm.get(), R, C, c.rms_norm_eps);
}

}  // namespace dpo
