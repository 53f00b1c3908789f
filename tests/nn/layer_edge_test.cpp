// Edge cases of the layers' row operations, forward and backward (fp32, against the closed forms
// written here in fp64 on the same fp32 inputs): LayerNorm and RMSNorm on huge (1e20 … 1e37) and
// tiny magnitudes, D = 1, zero and constant rows, non-finite rows that must not leak into other rows;
// MultiheadAttention rows with no visible key (a fully masked query row, a batch row of key length
// 0): out = 0 before the output projection, dquery = 0 and no contribution to dkey/dvalue
// (docs/contract.md §6), never NaN.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "attn/nn/multihead_attention.hpp"
#include "attn/nn/norm.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

// y and dx of LayerNorm (rms = false) or RMSNorm in fp64 from the closed forms
// (include/attn/nn/norm.hpp), gains w, biases b (LayerNorm only); dx_scale = the size of dx's
// terms, rstd·(|g| + |mean g| + |x̂·mean(g·x̂)|), the scale of fp32's rounding when they cancel.
void norm_reference(bool rms, const std::vector<float>& x, const std::vector<float>& dy, std::int64_t M,
                    std::int64_t C, const std::vector<float>& w, const std::vector<float>& b, double eps,
                    std::vector<double>& y, std::vector<double>& dx, std::vector<double>& dx_scale) {
  y.assign(x.size(), 0.0);
  dx.assign(x.size(), 0.0);
  dx_scale.assign(x.size(), 0.0);
  for (std::int64_t m = 0; m < M; ++m) {
    const auto at = [&](std::int64_t c) { return static_cast<std::size_t>(m * C + c); };
    double mean = 0, var = 0;
    if (!rms)
      for (std::int64_t c = 0; c < C; ++c) mean += static_cast<double>(x[at(c)]) / static_cast<double>(C);
    for (std::int64_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(x[at(c)]) - mean;
      var += d * d / static_cast<double>(C);
    }
    const double rstd = 1 / std::sqrt(var + eps);
    double mg = 0, mgx = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double xh = (static_cast<double>(x[at(c)]) - mean) * rstd;
      const double g = static_cast<double>(dy[at(c)]) * static_cast<double>(w[static_cast<std::size_t>(c)]);
      y[at(c)] = xh * w[static_cast<std::size_t>(c)] + (rms ? 0.0 : b[static_cast<std::size_t>(c)]);
      mg += g / static_cast<double>(C);
      mgx += g * xh / static_cast<double>(C);
    }
    for (std::int64_t c = 0; c < C; ++c) {
      const double xh = (static_cast<double>(x[at(c)]) - mean) * rstd;
      const double g = static_cast<double>(dy[at(c)]) * static_cast<double>(w[static_cast<std::size_t>(c)]);
      dx[at(c)] = rstd * (g - (rms ? 0.0 : mg) - xh * mgx);
      dx_scale[at(c)] = rstd * (std::abs(g) + (rms ? 0.0 : std::abs(mg)) + std::abs(xh * mgx));
    }
  }
}

struct NormRun {
  std::vector<float> y, dx, w, b;
};

template <class N>
NormRun run_norm(N& norm, bool rms, const std::vector<float>& x, const std::vector<float>& dy, std::int64_t M,
                 std::int64_t C) {
  NormRun r{std::vector<float>(x.size()), std::vector<float>(x.size()), {}, {}};
  float* w = static_cast<float*>(norm.parameter("weight").value.data);
  for (std::int64_t c = 0; c < C; ++c) w[c] = 0.5f + 0.125f * static_cast<float>(c % 5);
  r.w.assign(w, w + C);
  r.b.assign(static_cast<std::size_t>(C), 0.0f);
  if (!rms) {
    float* b = static_cast<float*>(norm.parameter("bias").value.data);
    for (std::int64_t c = 0; c < C; ++c) b[c] = 0.25f * static_cast<float>(c % 3) - 0.25f;
    r.b.assign(b, b + C);
  }
  norm.zero_grad();
  norm.forward(x.data(), M, r.y.data());
  norm.backward(x.data(), dy.data(), M, r.dx.data());
  return r;
}

// Rows of one magnitude each, forward and backward within `tol` of the scale of each row's values
// (y ~ 1, dx ~ rstd·|dy|).
void check_magnitudes(bool rms) {
  const std::int64_t C = 37;
  const std::vector<double> scales = {1e-30, 1e-3, 1.0, 1e20, 1e30, 1e37};
  const std::int64_t M = static_cast<std::int64_t>(scales.size());
  const std::vector<double> z = randn(static_cast<std::size_t>(M * C), 21);
  std::vector<float> x(z.size());
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t c = 0; c < C; ++c) {
      const auto i = static_cast<std::size_t>(m * C + c);
      x[i] = static_cast<float>(scales[static_cast<std::size_t>(m)] * (z[i] + (rms ? 0.0 : 3.0)));  // LN: an offset too
    }
  const std::vector<float> dy = to_f32(randn(x.size(), 22));
  NormRun r;
  double eps = 0;
  if (rms) {
    nn::RMSNorm<float> n(C, 1e-6);
    r = run_norm(n, true, x, dy, M, C);
    eps = n.eps();
  } else {
    nn::LayerNorm<float> n(C, 1e-5);
    r = run_norm(n, false, x, dy, M, C);
    eps = n.eps();
  }
  std::vector<double> y, dx, ds;
  norm_reference(rms, x, dy, M, C, r.w, r.b, eps, y, dx, ds);
  for (std::int64_t m = 0; m < M; ++m) {
    for (std::int64_t c = 0; c < C; ++c) {
      const auto i = static_cast<std::size_t>(m * C + c);
      ASSERT_TRUE(std::isfinite(r.y[i]) && std::isfinite(r.dx[i])) << "scale " << scales[static_cast<std::size_t>(m)];
      EXPECT_NEAR(r.y[i], y[i], 2e-6 * (1 + std::abs(y[i]))) << (rms ? "rms" : "ln") << " y, scale " << scales[static_cast<std::size_t>(m)];
      // At 1e37, rstd ~ 1e-37 is near fp32's subnormal range: dx keeps fewer digits there.
      const double tol = scales[static_cast<std::size_t>(m)] >= 1e37 ? 1e-4 : 1e-5;
      EXPECT_NEAR(r.dx[i], dx[i], tol * ds[i]) << (rms ? "rms" : "ln") << " dx, scale " << scales[static_cast<std::size_t>(m)];
    }
  }
}

TEST(LayerEdge, LayerNormHugeAndTinyMagnitudes) { check_magnitudes(false); }
TEST(LayerEdge, RMSNormHugeAndTinyMagnitudes) { check_magnitudes(true); }

TEST(LayerEdge, NormsOfWidthOne) {
  // D = 1: LayerNorm's x̂ is 0, so y = β and dx = 0 exactly; RMSNorm's y = x/√(x² + eps)·γ.
  const std::vector<float> x = {0.0f, 1e-20f, -3.0f, 1e10f, -1e30f, 7.0f};
  const std::vector<float> dy = {1.0f, -2.0f, 0.5f, 3.0f, -1.0f, 0.25f};
  const std::int64_t M = 6;
  nn::LayerNorm<float> ln(1);
  NormRun a = run_norm(ln, false, x, dy, M, 1);
  for (std::int64_t m = 0; m < M; ++m) {
    EXPECT_EQ(a.y[static_cast<std::size_t>(m)], a.b[0]) << m;
    EXPECT_EQ(a.dx[static_cast<std::size_t>(m)], 0.0f) << m;
  }
  nn::RMSNorm<float> rms(1, 1e-6);
  NormRun r = run_norm(rms, true, x, dy, M, 1);
  std::vector<double> y, dx, ds;
  norm_reference(true, x, dy, M, 1, r.w, r.b, rms.eps(), y, dx, ds);
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(r.y[i], y[i], 1e-6 * (1 + std::abs(y[i]))) << i;
    EXPECT_NEAR(r.dx[i], dx[i], 1e-6 * ds[i]) << i;
  }
}

TEST(LayerEdge, ZeroAndConstantRows) {
  const std::int64_t C = 20, M = 3;
  std::vector<float> x(static_cast<std::size_t>(M * C), 0.0f);  // row 0 zero
  for (std::int64_t c = 0; c < C; ++c) {
    x[static_cast<std::size_t>(C + c)] = -2.5f;                      // row 1 constant
    x[static_cast<std::size_t>(2 * C + c)] = 1e30f;                  // row 2 constant and huge
  }
  const std::vector<float> dy = to_f32(randn(x.size(), 4));
  for (bool rms : {false, true}) {
    NormRun r;
    double eps = 0;
    if (rms) {
      nn::RMSNorm<float> n(C, 1e-6);
      r = run_norm(n, true, x, dy, M, C);
      eps = n.eps();
    } else {
      nn::LayerNorm<float> n(C);
      r = run_norm(n, false, x, dy, M, C);
      eps = n.eps();
    }
    std::vector<double> y, dx, ds;
    norm_reference(rms, x, dy, M, C, r.w, r.b, eps, y, dx, ds);
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(std::isfinite(r.y[i]) && std::isfinite(r.dx[i])) << (rms ? "rms " : "ln ") << i;
      if (!rms) {
        EXPECT_EQ(r.y[i], r.b[i % static_cast<std::size_t>(C)]) << "ln: a constant row is β exactly, " << i;
      }
      EXPECT_NEAR(r.y[i], y[i], 1e-6 * (1 + std::abs(y[i]))) << (rms ? "rms " : "ln ") << i;
      EXPECT_NEAR(r.dx[i], dx[i], 1e-6 * ds[i] + 1e-30) << (rms ? "rms " : "ln ") << i;
    }
    if (!rms) {  // dx = rstd·(g − mean g) with rstd = 1/√eps on the zero row: not zero, and matches
      EXPECT_GT(std::abs(r.dx[0]), 1.0f);
    }
  }
}

TEST(LayerEdge, NonFiniteRowsStayInTheirRows) {
  const std::int64_t C = 9, M = 4;
  std::vector<float> x = to_f32(randn(static_cast<std::size_t>(M * C), 8));
  x[1] = std::numeric_limits<float>::quiet_NaN();            // row 0
  x[2 * C + 3] = std::numeric_limits<float>::infinity();     // row 2
  const std::vector<float> dy = to_f32(randn(x.size(), 9));
  for (bool rms : {false, true}) {
    NormRun r;
    if (rms) {
      nn::RMSNorm<float> n(C);
      r = run_norm(n, true, x, dy, M, C);
    } else {
      nn::LayerNorm<float> n(C);
      r = run_norm(n, false, x, dy, M, C);
    }
    for (std::int64_t m : {1, 3})
      for (std::int64_t c = 0; c < C; ++c) {
        const auto i = static_cast<std::size_t>(m * C + c);
        EXPECT_TRUE(std::isfinite(r.y[i]) && std::isfinite(r.dx[i])) << (rms ? "rms" : "ln") << " row " << m;
      }
    bool nan_in_row0 = false;
    for (std::int64_t c = 0; c < C; ++c) nan_in_row0 |= std::isnan(r.y[static_cast<std::size_t>(c)]);
    EXPECT_TRUE(nan_in_row0) << "a NaN input must show in its own row";
  }
}

TEST(LayerEdge, AttentionRowsWithNoVisibleKey) {
  // Cross-attention B = 2, Lq = 5, Lk = 6, E = 16, 2 heads: batch row 0's query 2 sees no key (bool
  // mask), batch row 1 has key length 0 (no key at all).
  const std::int64_t B = 2, Lq = 5, Lk = 6, E = 16;
  nn::MhaConfig cfg;
  cfg.embed_dim = E;
  cfg.num_heads = 2;
  cfg.batch_first = true;
  cfg.seed = 3;
  nn::MultiheadAttention<float> mha(cfg);
  float* bo = mha.out_proj().bias();
  for (std::int64_t e = 0; e < E; ++e) bo[e] = 0.1f * static_cast<float>(e) - 0.5f;
  std::vector<float> q = to_f32(randn(static_cast<std::size_t>(B * Lq * E), 1));
  std::vector<float> kv = to_f32(randn(static_cast<std::size_t>(B * Lk * E), 2));
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(B * Lq * Lk), 1);
  for (std::int64_t j = 0; j < Lk; ++j) mask[static_cast<std::size_t>(2 * Lk + j)] = 0;
  const TensorView qv(q.data(), DType::f32, {B, Lq, E}), kvv(kv.data(), DType::f32, {B, Lk, E});
  nn::MhaOptions opt;
  opt.attn_mask = TensorView(mask.data(), DType::boolean, {B, 1, Lq, Lk});
  opt.key_lengths = {Lk, 0};
  const nn::MhaOutput o = mha.forward(qv, kvv, kvv, opt);
  const float* out = o.out.ptr<float>();
  auto masked = [&](std::int64_t b, std::int64_t i) { return b == 1 || i == 2; };
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < Lq; ++i)
      for (std::int64_t e = 0; e < E; ++e) {
        const float v = out[(b * Lq + i) * E + e];
        ASSERT_TRUE(std::isfinite(v)) << b << "," << i;
        if (masked(b, i)) {
          EXPECT_EQ(v, bo[e]) << "no visible key: the attention output is 0, the module's the bias";
        }
      }
  const std::vector<float> dout = to_f32(randn(static_cast<std::size_t>(B * Lq * E), 3));
  const nn::MhaGrads g = mha.backward(TensorView(const_cast<float*>(dout.data()), DType::f32, {B, Lq, E}));
  const float* dq = g.dquery.ptr<float>();
  const float* dk = g.dkey.ptr<float>();
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < Lq; ++i)
      for (std::int64_t e = 0; e < E; ++e) {
        const float v = dq[(b * Lq + i) * E + e];
        ASSERT_TRUE(std::isfinite(v));
        if (masked(b, i)) {
          EXPECT_EQ(v, 0.0f) << "dquery of a row with no visible key";
        }
      }
  for (std::int64_t j = 0; j < Lk; ++j)
    for (std::int64_t e = 0; e < E; ++e) {
      EXPECT_EQ(dk[(1 * Lk + j) * E + e], 0.0f) << "batch row 1 has no keys: no key gradient";
      EXPECT_TRUE(std::isfinite(dk[(0 * Lk + j) * E + e]));
    }
}

}  // namespace
}  // namespace attn::test
