// FAVOR+: the projection (deterministic in its seed, orthogonal rows within a block, Gaussian
// row lengths) and the approximation of softmax attention, whose error must fall as m grows
// (averaged over fixed seeds; the estimator's error is O(1/√m), so 16× the features should cut
// it about 4×; the bound asks for 2.5×).

#include <gtest/gtest.h>

#include <iostream>

#include "attn/error.hpp"

#include "linear/linear_case.hpp"

namespace attn::test {
namespace {

TEST(FavorProjection, DeterministicOrthogonalBlocks) {
  const std::int64_t m = 40, D = 16;
  const Projection a = make_projection(m, D, 123), b = make_projection(m, D, 123), c = make_projection(m, D, 124);
  EXPECT_EQ(a.values, b.values);
  EXPECT_NE(a.values, c.values);
  double mean_sq = 0.0;
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t s = 0; s < r; ++s) {
      if (r / D != s / D) continue;  // orthogonal within a block of D rows
      double dot = 0.0, nr = 0.0, ns = 0.0;
      for (std::int64_t d = 0; d < D; ++d) {
        dot += a.values[static_cast<std::size_t>(r * D + d)] * a.values[static_cast<std::size_t>(s * D + d)];
        nr += a.values[static_cast<std::size_t>(r * D + d)] * a.values[static_cast<std::size_t>(r * D + d)];
        ns += a.values[static_cast<std::size_t>(s * D + d)] * a.values[static_cast<std::size_t>(s * D + d)];
      }
      EXPECT_LT(std::abs(dot) / std::sqrt(nr * ns), 1e-10) << r << " " << s;
    }
    for (std::int64_t d = 0; d < D; ++d)
      mean_sq += a.values[static_cast<std::size_t>(r * D + d)] * a.values[static_cast<std::size_t>(r * D + d)];
  }
  // Rows are marginally N(0, I_D): E‖ω‖² = D. 40 rows: the mean of χ²_16 / 16 has sd ≈ 0.056.
  EXPECT_NEAR(mean_sq / static_cast<double>(m * D), 1.0, 0.25);
  GuardedTensor f32 = make_tensor(DType::f32, {m, D});
  favor_projection(f32.view, 123);
  for (std::int64_t l = 0; l < m; ++l)
    for (std::int64_t d = 0; d < D; ++d)
      EXPECT_FLOAT_EQ(at(f32.view, l, d), a.values[static_cast<std::size_t>(l * D + d)]);
}

TEST(FavorProjection, BadOmegaIsNamed) {
  GuardedTensor w = make_tensor(DType::bf16, {4, 4});
  EXPECT_THROW(favor_projection(w.view, 1), Error);
}

// Relative Frobenius error of FAVOR+ attention against exact softmax attention, mean over seeds.
double mean_error(std::int64_t m, bool causal) {
  const std::int64_t N = 32, D = 16, Dv = 8;
  double total = 0.0;
  const int seeds = 8;
  for (int seed = 0; seed < seeds; ++seed) {
    Qkv x = make_qkv(1, 2, 2, N, N, D, Dv, DType::f64, Layout::bhsd, 1000 + static_cast<std::uint64_t>(seed));
    fill_normal(x.q.view, 77 + static_cast<std::uint64_t>(seed), 0.0, 0.4);
    fill_normal(x.k.view, 88 + static_cast<std::uint64_t>(seed), 0.0, 0.4);
    const NaiveResult exact =
        naive_attention(x, [&](std::int64_t, std::int64_t, std::int64_t i, std::int64_t j, double dot) {
          return causal && j > i ? -kInf : dot / std::sqrt(static_cast<double>(D));
        });
    Projection proj = make_projection(m, D, 5000 + static_cast<std::uint64_t>(seed));
    LinearAttentionParams p;
    p.feature_map = FeatureMap::favor;
    p.projection = proj.t.view;
    p.mask.causal = causal;
    GuardedTensor out = make_tensor4(DType::f64, 1, 2, N, Dv);
    linear_attention_forward({out.view, {}}, x.q, x.k, x.v, p);
    double num = 0.0, den = 0.0;
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t i = 0; i < N; ++i)
        for (std::int64_t d = 0; d < Dv; ++d) {
          const double e = exact.out_at(x, 0, h, i, d);
          num += (at(out.view, 0, h, i, d) - e) * (at(out.view, 0, h, i, d) - e);
          den += e * e;
        }
    total += std::sqrt(num / den);
  }
  return total / seeds;
}

TEST(Favor, ApproximatesSoftmaxWithErrorFallingInM) {
  for (bool causal : {false, true}) {
    const double e16 = mean_error(16, causal), e64 = mean_error(64, causal), e256 = mean_error(256, causal),
                 e1024 = mean_error(1024, causal);
    std::cout << (causal ? "causal" : "non-causal") << " errors m=16: " << e16 << ", 64: " << e64 << ", 256: " << e256
              << ", 1024: " << e1024 << "\n";
    EXPECT_LT(e64, e16);
    EXPECT_LT(e256, e64);
    EXPECT_LT(e1024, e256);
    EXPECT_LT(e256, e16 / 2.5);
    EXPECT_LT(e1024, e64 / 2.5);
    EXPECT_LT(e1024, 0.1);
  }
}

}  // namespace
}  // namespace attn::test
