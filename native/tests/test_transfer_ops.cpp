// The small backend ops between the big ones (row moves, axpy/scale, dropout, embedding gradient, decode
// attention) against plain double-precision loops, and the guarded CPU backend's two checks: an op handed host
// memory throws, and host code touching backend memory crashes.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "check.h"
#include "cpu/ops.h"
#include "dpo/backend.h"
#include "dpo/errors.h"
#include "random_data.h"

using dpo_test::randn;
using dpo_test::randu;

TEST_CASE(scatter_and_gather_rows_move_whole_rows) {
  const int M = 3, W = 5;
  auto src = randn(M * W, 1.0f, 1);
  std::vector<float> dst(6 * W, -1.0f), back(M * W);
  const int rows[M] = {4, 0, 2};
  dpo::cpu::scatter_rows(dst.data(), rows, src.data(), M, W);
  for (int r = 0; r < M; r++)
    for (int j = 0; j < W; j++) CHECK(dst[size_t(rows[r] * W + j)] == src[size_t(r * W + j)]);
  for (int j = 0; j < W; j++) CHECK(dst[size_t(1 * W + j)] == -1.0f);  // untouched rows stay
  dpo::cpu::gather_rows(back.data(), dst.data(), rows, M, W);
  CHECK(back == src);
}

TEST_CASE(axpy_scale_and_dropout_round_each_product) {
  const int n = 1000;
  auto x = randn(n, 1.0f, 2), y = randn(n, 1.0f, 3);
  const float a = 0.37f;
  std::vector<float> y2 = y, s(n), d(n), dx(n, 0.5f);
  std::vector<uint8_t> kept(n);
  for (int i = 0; i < n; i++) kept[size_t(i)] = uint8_t(i % 3 != 0);
  dpo::cpu::axpy(y2.data(), x.data(), a, n);
  dpo::cpu::scale(s.data(), x.data(), a, n);
  dpo::cpu::dropout_forward(d.data(), x.data(), kept.data(), 1.25f, n);
  dpo::cpu::dropout_backward(dx.data(), x.data(), kept.data(), 1.25f, n);
  for (int i = 0; i < n; i++) {
    const size_t k = size_t(i);
    // Products rounded to fp32 first, then the add (double of two fp32 values rounds exactly once more).
    const float prod = float(double(x[k]) * a);
    CHECK(y2[k] == float(double(y[k]) + prod));
    CHECK(s[k] == prod);
    CHECK(d[k] == (kept[k] ? float(double(x[k]) * 1.25) : 0.0f));
    CHECK(dx[k] == (kept[k] ? float(0.5 + double(float(double(x[k]) * 1.25))) : 0.5f));
  }
}

TEST_CASE(embedding_backward_adds_repeated_ids_in_row_order) {
  const int M = 4, C = 6;
  const int ids[M] = {2, 0, 2, 3};
  auto dout = randn(M * C, 1.0f, 5);
  std::vector<float> table(5 * C, 0.0f);
  dpo::cpu::embedding_backward(table.data(), dout.data(), ids, M, C);
  for (int j = 0; j < C; j++) {
    CHECK(table[size_t(2 * C + j)] == dout[size_t(0 * C + j)] + dout[size_t(2 * C + j)]);
    CHECK(table[size_t(0 * C + j)] == dout[size_t(1 * C + j)]);
    CHECK(table[size_t(1 * C + j)] == 0.0f);
  }
}

TEST_CASE(decode_attention_equals_the_full_sequence_pass) {
  // Two sequences of length T in a cache of capacity S; decoding position t of sequence b must give what the causal
  // full-sequence pass gives at (b, t), bit for bit.
  const int B = 2, T = 7, S = 9, NH = 4, NKV = 2, HD = 8, QD = NH * HD, KVD = NKV * HD;
  auto q = randn(B * T * QD, 1.0f, 6), k = randn(B * T * KVD, 1.0f, 7), v = randn(B * T * KVD, 1.0f, 8);
  std::vector<int> pos(B * T);
  for (int i = 0; i < B * T; i++) pos[size_t(i)] = i % T;
  std::vector<float> full(B * T * QD);
  dpo::cpu::attention_forward(full.data(), nullptr, q.data(), k.data(), v.data(), pos.data(), nullptr, B, T, T, NH,
                              NKV, HD);
  std::vector<float> kc(B * S * KVD, 0.0f), vc(B * S * KVD, 0.0f);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      std::memcpy(&kc[size_t((b * S + t) * KVD)], &k[size_t((b * T + t) * KVD)], sizeof(float) * KVD);
      std::memcpy(&vc[size_t((b * S + t) * KVD)], &v[size_t((b * T + t) * KVD)], sizeof(float) * KVD);
    }
  // Rows: (b=1, t=6), (b=0, t=3), (b=1, t=0).
  const int seq[3] = {1, 0, 1}, dpos[3] = {6, 3, 0};
  std::vector<float> qrows(3 * QD), out(3 * QD);
  for (int r = 0; r < 3; r++)
    std::memcpy(&qrows[size_t(r * QD)], &q[size_t((seq[r] * T + dpos[r]) * QD)], sizeof(float) * QD);
  dpo::cpu::attention_decode(out.data(), qrows.data(), kc.data(), vc.data(), seq, dpos, 3, S, NH, NKV, HD);
  for (int r = 0; r < 3; r++)
    for (int j = 0; j < QD; j++) CHECK(out[size_t(r * QD + j)] == full[size_t((seq[r] * T + dpos[r]) * QD + j)]);
}

TEST_CASE(guarded_backend_rejects_host_memory_in_ops) {
  auto be = dpo::make_guarded_cpu_backend();
  float* d = static_cast<float*>(be->alloc(16 * sizeof(float)));
  std::vector<float> host(16, 1.0f), back(16, 0.0f);
  be->upload(d, host.data(), 16 * sizeof(float));
  be->scale(d, d, 2.0f, 16);
  be->download(back.data(), d, 16 * sizeof(float));
  CHECK(back[5] == 2.0f);
  CHECK(be->bytes_in_use() == 16 * sizeof(float));
  CHECK_THROWS_CODE(be->scale(d, host.data(), 2.0f, 16), dpo::ErrorCode::Internal, "host memory");
  be->free(d);
  CHECK(be->bytes_in_use() == 0);
  CHECK(be->peak_bytes() == 16 * sizeof(float));
}

TEST_CASE(guarded_backend_memory_is_unreadable_from_host_code) {
  auto be = dpo::make_guarded_cpu_backend();
  volatile float* d = static_cast<float*>(be->alloc(64));
  std::fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    const float x = d[0];  // must fault
    _exit(x == 12345.0f ? 3 : 0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  be->free(const_cast<float*>(d));
}

int main() { return dpo_test::run_all(); }
