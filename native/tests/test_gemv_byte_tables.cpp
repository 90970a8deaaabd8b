// The AVX2 decode GEMV's cached byte tables (docs/cpu-kernels.md#cached-byte-tables-on-avx2): a prepared matrix must
// give the bits of the same matrix unprepared (tables built per block on the fly) at every row count of the register
// path, every storage dtype, fp16-subnormal scales, NaN and infinite absmax, and 1 or 2 threads; the tables exist only
// within their budget, are shared by copies, and give their bytes back when the last copy goes. Runs the AVX2 kernel
// set wherever the CPU has it (an AVX-512 machine too); elsewhere prepare must leave the matrix as it was.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "core/half.h"
#include "cpu/nf4_gemv_table_budget.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "op_checks.h"
#include "quant/nf4.h"
#include "random_data.h"
#include "reference_ops.h"

using namespace dpo;
using namespace dpo_test;
using std::vector;

namespace {

// Whether this process runs the set that keeps byte tables: forced where the CPU has AVX2, or the one set of a build
// without kernel sets (DPO_CPU_KERNEL_SETS=OFF) on an AVX2 machine without AVX-512.
bool byte_table_set() {
  static const bool avx2 = cpu::use_matmul_kernel_set("avx2") ||
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
                           std::string(cpu::matmul_kernel_set()) == "native";
#else
                           false;
#endif
  return avx2;
}

// out (M, N) for x (M, K) through the NF4 forward (the register path for M <= kGemvMaxRows, K % 64 == 0).
vector<float> forward(const Nf4Matrix& w, const vector<float>& x, const vector<float>& bias, int M) {
  vector<float> out(size_t(M) * size_t(w.rows), NAN);
  cpu::matmul_nf4_forward(out.data(), x.data(), w, bias.data(), M);
  return out;
}

}  // namespace

TEST_CASE(prepared_matrix_gives_the_unprepared_bits) {
  byte_table_set();
  const int shapes[][2] = {{64, 1}, {128, 37}, {1024, 96}, {896, 173}, {2048, 40}};
  uint32_t seed = 7100;
  for (auto& s : shapes) {
    const int K = s[0], N = s[1];
    for (float sigma : {0.05f, 3e-6f}) {
      for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
        const Nf4Matrix plain = random_nf4(N, K, sigma, dt, seed++);
        const Nf4Matrix prepared = plain;
        cpu::matmul_nf4_prepare(prepared);
        CHECK(plain.gemv_byte_tables == nullptr);  // a copy taken before: its own, unprepared
        CHECK((prepared.gemv_byte_tables != nullptr) == byte_table_set());
        if (prepared.gemv_byte_tables) CHECK(int64_t(prepared.gemv_byte_tables->size()) == prepared.blocks() * 32);
        const auto x = randu(size_t(8) * K, -2, 2, seed++), bias = randu(size_t(N), -1, 1, seed++);
        for (int threads : {1, 2}) {
          set_cpu_thread_count(threads);
          for (int M = 1; M <= 8; M++) CHECK(same_bits(forward(prepared, x, bias, M), forward(plain, x, bias, M)));
        }
        // and the double reference, once per matrix
        vector<double> ref, scale;
        const vector<double> bias_d = to_d(bias);
        ref_matmul(ref, &scale, to_d(bf16_all(vector<float>(x.begin(), x.begin() + K))),
                   to_d(nf4_weights_bf16(prepared)), bias_d.data(), 1, K, N);
        check_scaled("prepared nf4 GEMV vs bf16 ref", forward(prepared, x, bias, 1), ref, scale, 1e-5);
      }
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(tiled_path_with_tables_gives_the_unprepared_bits) {
  // Past the register path (M > 8) and in the input gradient, the decoded panels come from the cached tables where a
  // matrix has them (docs/cpu-kernels.md#byte-tables-for-the-decoded-panels): the same bits as decoding without them,
  // plain and split panels, one and more column chunks (K = 2048 runs in chunks), 1 and 2 threads.
  byte_table_set();
  const int shapes[][2] = {{64, 5}, {192, 37}, {896, 70}, {2048, 24}};
  uint32_t seed = 7200;
  for (auto& s : shapes) {
    const int K = s[0], N = s[1];
    for (auto dt : {Nf4StorageDType::F16, Nf4StorageDType::BF16, Nf4StorageDType::F32}) {
      const Nf4Matrix plain = random_nf4(N, K, 0.05f, dt, seed++);
      const Nf4Matrix prepared = plain;
      cpu::matmul_nf4_prepare(prepared);
      CHECK((prepared.gemv_byte_tables != nullptr) == byte_table_set());
      for (int M : {9, 23, 70}) {
        const auto x = randu(size_t(M) * K, -2, 2, seed++), bias = randu(size_t(N), -1, 1, seed++);
        const auto dout = randu(size_t(M) * N, -1, 1, seed++), dx0 = randu(size_t(M) * K, -1, 1, seed++);
        for (int threads : {1, 2}) {
          set_cpu_thread_count(threads);
          CHECK(same_bits(forward(prepared, x, bias, M), forward(plain, x, bias, M)));
          vector<float> dx_a = dx0, dx_b = dx0;
          cpu::matmul_nf4_backward_input(dx_a.data(), dout.data(), prepared, M);
          cpu::matmul_nf4_backward_input(dx_b.data(), dout.data(), plain, M);
          CHECK(same_bits(dx_a, dx_b));
        }
      }
    }
  }
  set_cpu_thread_count(0);
}

TEST_CASE(blocks_with_nan_and_infinite_scales_give_the_same_bits) {
  // A non-finite absmax takes the table's NaN arm (inf * 0 is NaN); the cached table must hold what the GEMV builds.
  byte_table_set();
  const int K = 256, N = 6;
  auto wf = randn(size_t(N) * K, 0.05f, 7300);
  Nf4Matrix w = nf4_quantize(wf.data(), N, K, Nf4StorageDType::F32);
  w.absmax2[0] = INFINITY;  // every block of the first nested block: absmax = code * inf + offset
  w.absmax_offset = 0.0f;
  nf4_dequantize_absmax(w, w.absmax.data());  // the fp32 cache, which the tiled path reads, as a loader leaves it
  const Nf4Matrix prepared = w;
  cpu::matmul_nf4_prepare(prepared);
  CHECK((prepared.gemv_byte_tables != nullptr) == byte_table_set());
  const auto x = randu(size_t(8) * K, -2, 2, 7301), bias = randu(size_t(N), -1, 1, 7302);
  for (int M = 1; M <= 8; M++) CHECK(same_bits(forward(prepared, x, bias, M), forward(w, x, bias, M)));
}

TEST_CASE(tables_stay_within_their_budget) {
  if (!byte_table_set()) return;  // no set here keeps tables: nothing to budget
  const int K = 512, N = 64;  // 512 blocks: 16 KiB of tables
  const int64_t bytes = int64_t(N) * K / 64 * 32;
  auto wf = randn(size_t(N) * K, 0.05f, 7400);
  const Nf4Matrix w = nf4_quantize(wf.data(), N, K);
  const int64_t before = cpu::nf4_gemv_tables_in_use();
  const int64_t saved_budget = cpu::nf4_gemv_table_budget();

  cpu::set_nf4_gemv_table_budget(0);  // DPO_CPU_GEMV_TABLES_MB=0: never
  {
    const Nf4Matrix a = w;
    cpu::matmul_nf4_prepare(a);
    CHECK(a.gemv_byte_tables == nullptr);
    CHECK(cpu::nf4_gemv_tables_in_use() == before);
  }
  cpu::set_nf4_gemv_table_budget(before + bytes);  // room for exactly one matrix
  {
    const Nf4Matrix a = w, b = w;
    cpu::matmul_nf4_prepare(a);
    cpu::matmul_nf4_prepare(a);  // prepared once: the same tables, no second reservation
    CHECK(a.gemv_byte_tables != nullptr);
    CHECK(cpu::nf4_gemv_tables_in_use() == before + bytes);
    cpu::matmul_nf4_prepare(b);
    CHECK(b.gemv_byte_tables == nullptr);  // over the budget: decoded as before, same bits
    const Nf4Matrix copy = a;
    CHECK(copy.gemv_byte_tables == a.gemv_byte_tables);  // shared, not copied
    const auto x = randu(size_t(3) * K, -2, 2, 7401), bias = randu(size_t(N), -1, 1, 7402);
    CHECK(same_bits(forward(copy, x, bias, 3), forward(b, x, bias, 3)));
  }
  CHECK(cpu::nf4_gemv_tables_in_use() == before);  // the last copy gave the bytes back
  cpu::set_nf4_gemv_table_budget(saved_budget);
}

TEST_MAIN()
