// nn::Embedding (src/nn/embedding.cpp): lookup, accumulation, the scatter-add backward with
// repeated ids against finite differences, init statistics, out-of-range ids, the same bits on any
// thread count.

#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cstdint>

#include "attn/error.hpp"
#include "attn/nn/embedding.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

TEST(Embedding, LookupAccumulateAndBackward) {
  const std::int64_t V = 6, E = 5, M = 7;
  nn::Embedding<double> emb(V, E, 2);
  const std::vector<std::int64_t> ids{3, 0, 5, 3, 3, 1, 0};
  const double* W = static_cast<const double*>(emb.parameter("weight").value.data);
  std::vector<double> y(static_cast<std::size_t>(M * E + 3), 7.0);  // 3 guard elements past the rows
  emb.forward(ids.data(), M, y.data(), E);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t c = 0; c < E; ++c) ASSERT_EQ(y[m * E + c], W[ids[m] * E + c]);
  EXPECT_EQ(y[M * E], 7.0);  // nothing past the rows
  emb.forward(ids.data(), M, y.data(), E, true);
  for (std::int64_t m = 0; m < M; ++m) ASSERT_EQ(y[m * E], 2 * W[ids[m] * E]);
  // Row stride larger than E.
  std::vector<double> wide(static_cast<std::size_t>(M * 8), -1.0);
  emb.forward(ids.data(), M, wide.data(), 8);
  EXPECT_EQ(wide[8 + 1], W[0 * E + 1]);
  EXPECT_EQ(wide[5], -1.0);

  const std::vector<double> R = randn(static_cast<std::size_t>(M * E), 3);
  auto loss = [&] {
    emb.forward(ids.data(), M, y.data(), E);
    return dot(R, y.data());
  };
  emb.zero_grad();
  emb.backward(ids.data(), M, R.data(), E);
  expect_param_grads(emb, loss, 1e-8, "embedding");
  // Row 2 (never looked up) has zero gradient; row 3 (three times) the sum of three rows of R.
  const double* dW = static_cast<const double*>(emb.parameter("weight").grad.data);
  EXPECT_EQ(dW[2 * E], 0.0);
  EXPECT_NEAR(dW[3 * E + 1], R[0 * E + 1] + R[3 * E + 1] + R[4 * E + 1], 1e-15);
}

// Enough rows for the parallel paths (M·E ≥ 2^15; E = 70: two column blocks, the second partial),
// ids repeating: the lookup and the scatter-add have the bits of the serial loop on 1–3 threads.
TEST(Embedding, SameBitsForAnyThreadCount) {
  const std::int64_t V = 9, E = 70, M = 600;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(M));
  for (std::int64_t m = 0; m < M; ++m) ids[static_cast<std::size_t>(m)] = (m * 7 + m / 5) % V;
  const std::vector<float> dy = to_f32(randn(static_cast<std::size_t>(M * E), 4));
  nn::Embedding<float> emb(V, E, 3);
  const float* W = static_cast<const float*>(emb.parameter("weight").value.data);
  const float* G = static_cast<const float*>(emb.parameter("weight").grad.data);
  std::vector<float> expect_g(static_cast<std::size_t>(V * E), 0.0f);  // the serial loop, written here
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t c = 0; c < E; ++c) expect_g[ids[m] * E + c] += dy[m * E + c];
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<float> y(static_cast<std::size_t>(M * E), 1.0f);
    emb.forward(ids.data(), M, y.data(), E, true);
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t c = 0; c < E; ++c) ASSERT_EQ(y[m * E + c], 1.0f + W[ids[m] * E + c]) << threads;
    emb.zero_grad();
    emb.backward(ids.data(), M, dy.data(), E);
    for (std::int64_t i = 0; i < V * E; ++i)
      ASSERT_EQ(std::bit_cast<std::uint32_t>(G[i]), std::bit_cast<std::uint32_t>(expect_g[i])) << threads << " " << i;
  }
  omp_set_num_threads(saved);
}

TEST(Embedding, InitIsStandardNormal) {
  nn::Embedding<float> emb(200, 100, 7);
  const float* w = static_cast<const float*>(emb.parameter("weight").value.data);
  double s = 0, s2 = 0;
  const int n = 200 * 100;
  for (int i = 0; i < n; ++i) {
    s += w[i];
    s2 += static_cast<double>(w[i]) * w[i];
  }
  EXPECT_NEAR(s / n, 0.0, 0.03);   // 4 standard errors
  EXPECT_NEAR(s2 / n, 1.0, 0.04);  // ~4 standard errors of the variance
  nn::Embedding<float> again(200, 100, 7), other(200, 100, 8);
  EXPECT_EQ(static_cast<const float*>(again.parameter("weight").value.data)[123], w[123]);
  EXPECT_NE(static_cast<const float*>(other.parameter("weight").value.data)[123], w[123]);
}

TEST(Embedding, Errors) {
  EXPECT_THROW(nn::Embedding<float>(0, 4), Error);
  EXPECT_THROW(nn::Embedding<float>(4, 0), Error);
  nn::Embedding<float> emb(4, 2);
  const std::vector<std::int64_t> ids{1, 4};
  std::vector<float> y(4, 9.0f);
  try {
    emb.forward(ids.data(), 2, y.data(), 2, false, "token_ids");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "token_ids");
    EXPECT_NE(std::string(e.what()).find("token_ids[1] = 4, expected 0 ≤ id < 4"), std::string::npos) << e.what();
  }
  EXPECT_EQ(y[0], 9.0f);  // nothing written
  const std::vector<std::int64_t> neg{-1};
  EXPECT_THROW(emb.forward(neg.data(), 1, y.data(), 2), Error);
}

}  // namespace
}  // namespace attn::test
