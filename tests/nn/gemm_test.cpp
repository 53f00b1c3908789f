// nn::detail::gemm (src/nn/gemm.hpp): the OpenMP split of large GEMMs into per-thread OpenBLAS
// calls — row blocks, column blocks, the one-row GEMV — against fp64 loops, for every transpose,
// padded leading dimensions and beta 0 / 1, and the same bits for any thread count.

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "nn/gemm.hpp"

extern "C" int openblas_get_num_threads(void);

namespace attn::test {
namespace {

struct Shape {
  std::int64_t M, N, K;
  const char* what;
};

// Large enough to be split (the split starts at 2 MFLOP): rows (M ≥ 64·threads), columns, GEMV.
const Shape kShapes[] = {{300, 150, 200, "row blocks"}, {20, 700, 300, "column blocks"}, {1, 3001, 400, "GEMV columns"},
                         {1, 5, 3, "tiny, one call"}};

std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

struct GemmResult {
  std::vector<float> c;
  std::int64_t ldc;
};

// C = op(A)·op(B) + beta·C on `threads` OpenMP threads; A, B, C with leading dimensions padded by 3.
GemmResult run(const Shape& s, bool ta, bool tb, float beta, int threads, const std::vector<float>& a,
        const std::vector<float>& b, std::int64_t lda, std::int64_t ldb) {
  GemmResult r{std::vector<float>(static_cast<std::size_t>(s.M * (s.N + 3))), s.N + 3};
  for (std::size_t i = 0; i < r.c.size(); ++i) r.c[i] = beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : 0.25f * static_cast<float>(i % 7);
  omp_set_num_threads(threads);
  nn::detail::gemm<float>(ta, tb, s.M, s.N, s.K, 1.0f, a.data(), lda, b.data(), ldb, beta, r.c.data(), r.ldc);
  return r;
}

TEST(Gemm, SplitMatchesLoopsForEveryTransposeAndThreadCount) {
  const int saved = omp_get_max_threads();
  for (const Shape& s : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.0f, 1.0f}) {
          // op(A) [M, K]: stored [M, K] or [K, M]; op(B) [K, N]: stored [K, N] or [N, K].
          const std::int64_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K, lda = a_cols + 3;
          const std::int64_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N, ldb = b_cols + 3;
          const auto a = random_vector(static_cast<std::size_t>(a_rows * lda), 1);
          const auto b = random_vector(static_cast<std::size_t>(b_rows * ldb), 2);
          const GemmResult one = run(s, ta, tb, beta, 1, a, b, lda, ldb);
          double err = 0.0, largest = 0.0;
          for (std::int64_t i = 0; i < s.M; ++i)
            for (std::int64_t j = 0; j < s.N; ++j) {
              double acc = beta == 0.0f ? 0.0 : 0.25 * static_cast<double>((i * one.ldc + j) % 7);
              for (std::int64_t k = 0; k < s.K; ++k)
                acc += static_cast<double>(ta ? a[k * lda + i] : a[i * lda + k]) * (tb ? b[j * ldb + k] : b[k * ldb + j]);
              err = std::max(err, std::abs(acc - one.c[i * one.ldc + j]));
              largest = std::max(largest, std::abs(acc));
            }
          EXPECT_LE(err, 1e-5 * (1.0 + largest) * std::sqrt(static_cast<double>(s.K)))
              << s.what << " ta=" << ta << " tb=" << tb << " beta=" << beta;
          for (int threads : {2, 3, 7}) {
            const GemmResult other = run(s, ta, tb, beta, threads, a, b, lda, ldb);
            bool same = true;  // the padding columns too: the split must not write past N
            for (std::int64_t i = 0; i < s.M; ++i)
              for (std::int64_t j = 0; j < one.ldc; ++j) {
                const float x = one.c[i * one.ldc + j], y = other.c[i * one.ldc + j];
                same = same && (x == y || (std::isnan(x) && std::isnan(y)));
              }
            EXPECT_TRUE(same) << s.what << " ta=" << ta << " tb=" << tb << " beta=" << beta << ": " << threads
                              << " threads differ from 1";
          }
        }
  omp_set_num_threads(saved);
}

TEST(Gemm, LeavesTheCallersOpenBlasThreadCount) {
  const int before = openblas_get_num_threads();
  const auto a = random_vector(300 * 200, 3), b = random_vector(200 * 150, 4);
  std::vector<float> c(300 * 150);
  omp_set_num_threads(2);
  nn::detail::gemm<float>(false, false, 300, 150, 200, 1.0f, a.data(), 200, b.data(), 150, 0.0f, c.data(), 150);
  EXPECT_EQ(openblas_get_num_threads(), before);
}

}  // namespace
}  // namespace attn::test
