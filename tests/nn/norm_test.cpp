// nn::LayerNorm, nn::RMSNorm (src/nn/norm.cpp): forward against the formula written here, backward
// against fp64 finite differences, f32 against f64, and the edge cases: constant rows, a large
// common offset, C = 1, zero rows for RMSNorm, accumulation into dx, bad arguments; the same bits
// on any thread count.

#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cstdint>

#include "attn/error.hpp"
#include "attn/nn/norm.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

// LayerNorm / RMSNorm by their definition, fp64.
std::vector<double> naive_norm(bool rms, const std::vector<double>& x, std::int64_t M, std::int64_t C, const double* w,
                               const double* b, double eps) {
  std::vector<double> y(x.size());
  for (std::int64_t m = 0; m < M; ++m) {
    const double* xm = x.data() + m * C;
    double mean = 0, var = 0;
    if (!rms) {
      for (std::int64_t c = 0; c < C; ++c) mean += xm[c] / C;
      for (std::int64_t c = 0; c < C; ++c) var += (xm[c] - mean) * (xm[c] - mean) / C;
    } else {
      for (std::int64_t c = 0; c < C; ++c) var += xm[c] * xm[c] / C;
    }
    for (std::int64_t c = 0; c < C; ++c) y[m * C + c] = (xm[c] - mean) / std::sqrt(var + eps) * w[c] + (b ? b[c] : 0.0);
  }
  return y;
}

template <class N>
void check_norm_grads(N& norm, bool rms, std::int64_t M, std::int64_t C, std::vector<double> x, const char* what) {
  randomize_params(norm, 11);
  for (const nn::Parameter& p : norm.parameters())  // gains around 1
    if (p.name == "weight")
      for (std::int64_t c = 0; c < C; ++c) static_cast<double*>(p.value.data)[c] += 1.0;
  const std::vector<double> R = randn(x.size(), 5);
  std::vector<double> y(x.size());
  auto loss = [&] {
    norm.forward(x.data(), M, y.data());
    return dot(R, y.data());
  };
  loss();
  const double* w = static_cast<double*>(norm.parameter("weight").value.data);
  const double* b = rms ? nullptr : static_cast<double*>(norm.parameter("bias").value.data);
  const std::vector<double> ref = naive_norm(rms, x, M, C, w, b, norm.eps());
  for (std::size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 1e-12) << what << " y[" << i << "]";
  norm.zero_grad();
  std::vector<double> dx(x.size(), 0.0);
  norm.backward(x.data(), R.data(), M, dx.data());
  EXPECT_LE(fd_error(x.data(), dx.data(), M * C, loss), 1e-7) << what << ": dx";
  expect_param_grads(norm, loss, 1e-7, what);
  // accumulate adds to what dx held.
  std::vector<double> dx2(x.size(), 1.0);
  loss();
  norm.backward(x.data(), R.data(), M, dx2.data(), true);
  for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx2[i], dx[i] + 1.0, 1e-12) << what;
}

TEST(LayerNorm, ForwardAndBackwardMatchFormulaAndFiniteDifferences) {
  for (std::int64_t C : {1, 7, 13, 64}) {
    const std::int64_t M = 5;
    std::vector<double> x = randn(static_cast<std::size_t>(M * C), 3);
    for (std::int64_t c = 0; c < C; ++c) x[static_cast<std::size_t>(2 * C + c)] = 0.75;  // row 2 constant
    // eps = 1e-2 keeps the constant row inside the region where central differences (h = 1e-5)
    // resolve the curvature (its scale is √eps).
    nn::LayerNorm<double> ln(C, 1e-2);
    check_norm_grads(ln, false, M, C, x, ("layer_norm C=" + std::to_string(C)).c_str());
    nn::LayerNorm<double> nobias(C, 1e-3, false);
    EXPECT_EQ(nobias.parameters().size(), 1u);
  }
}

TEST(RMSNorm, ForwardAndBackwardMatchFormulaAndFiniteDifferences) {
  for (std::int64_t C : {1, 7, 13, 64}) {
    const std::int64_t M = 5;
    std::vector<double> x = randn(static_cast<std::size_t>(M * C), 4);
    for (std::int64_t c = 0; c < C; ++c) x[static_cast<std::size_t>(C + c)] = 0.0;  // row 1 zero
    nn::RMSNorm<double> rms(C, 1e-2);  // √eps ≫ h at the zero row, as above
    check_norm_grads(rms, true, M, C, x, ("rms_norm C=" + std::to_string(C)).c_str());
  }
}

TEST(LayerNorm, EdgeCases) {
  const std::int64_t C = 33;
  nn::LayerNorm<float> ln(C);
  std::vector<float> beta(C);
  float* wp = static_cast<float*>(ln.parameter("weight").value.data);
  float* bp = static_cast<float*>(ln.parameter("bias").value.data);
  for (std::int64_t c = 0; c < C; ++c) {
    wp[c] = 2.0f;
    bp[c] = beta[static_cast<std::size_t>(c)] = static_cast<float>(c) * 0.1f;
  }
  // Row 0: constant (var = 0): y = β exactly, finite dx. Row 1: 1e4 + N(0, 1) — a one-pass variance
  // E[x²] − E[x]² would lose every digit in fp32. Row 2: tiny values (1e-30), where eps dominates.
  std::vector<double> xd = randn(static_cast<std::size_t>(3 * C), 9);
  for (std::int64_t c = 0; c < C; ++c) {
    xd[static_cast<std::size_t>(c)] = 123.25;
    xd[static_cast<std::size_t>(C + c)] += 1e4;
    xd[static_cast<std::size_t>(2 * C + c)] *= 1e-30;
  }
  const std::vector<float> x = to_f32(xd);
  std::vector<float> y(x.size()), dx(x.size());
  ln.forward(x.data(), 3, y.data());
  for (std::int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(y[static_cast<std::size_t>(c)], beta[static_cast<std::size_t>(c)]) << c;
    EXPECT_NEAR(y[static_cast<std::size_t>(2 * C + c)], beta[static_cast<std::size_t>(c)], 1e-6) << c;
  }
  const std::vector<double> w(C, 2.0), b(beta.begin(), beta.end());
  std::vector<double> x_as_f32(x.begin(), x.end());
  const std::vector<double> ref = naive_norm(false, x_as_f32, 3, C, w.data(), b.data(), 1e-5);
  for (std::int64_t c = 0; c < C; ++c)
    EXPECT_NEAR(y[static_cast<std::size_t>(C + c)], ref[static_cast<std::size_t>(C + c)], 1e-4) << "offset row " << c;
  const std::vector<float> dy = to_f32(randn(x.size(), 2));
  ln.backward(x.data(), dy.data(), 3, dx.data());
  for (float v : dx) EXPECT_TRUE(std::isfinite(v));
}

TEST(LayerNorm, F32MatchesF64) {
  const std::int64_t M = 65, C = 127;
  nn::LayerNorm<double> l64(C);
  nn::LayerNorm<float> l32(C);
  randomize_params(l64, 3);
  for (std::size_t i = 0; i < 2; ++i) {
    const nn::Parameter a = l64.parameters()[i], b = l32.parameters()[i];
    for (std::int64_t c = 0; c < C; ++c)
      static_cast<float*>(b.value.data)[c] = static_cast<float>(static_cast<double*>(a.value.data)[c]);
    for (std::int64_t c = 0; c < C; ++c) static_cast<double*>(a.value.data)[c] = static_cast<float*>(b.value.data)[c];
  }
  const std::vector<float> x = to_f32(randn(static_cast<std::size_t>(M * C), 1, 3.0));
  const std::vector<double> xd(x.begin(), x.end());
  std::vector<float> y(x.size()), dx(x.size());
  std::vector<double> yd(x.size()), dxd(x.size());
  const std::vector<float> dy = to_f32(randn(x.size(), 2));
  const std::vector<double> dyd(dy.begin(), dy.end());
  l32.forward(x.data(), M, y.data());
  l64.forward(xd.data(), M, yd.data());
  l32.backward(x.data(), dy.data(), M, dx.data());
  l64.backward(xd.data(), dyd.data(), M, dxd.data());
  for (std::size_t i = 0; i < y.size(); ++i) {
    ASSERT_NEAR(y[i], yd[i], 2e-5 * (1 + std::abs(yd[i])));
    ASSERT_NEAR(dx[i], dxd[i], 2e-5 * (1 + std::abs(dxd[i])));
  }
  for (std::size_t i = 0; i < 2; ++i) {
    const nn::Parameter a = l64.parameters()[i], b = l32.parameters()[i];
    for (std::int64_t c = 0; c < C; ++c)
      ASSERT_NEAR(static_cast<float*>(b.grad.data)[c], static_cast<double*>(a.grad.data)[c],
                  1e-4 * (1 + std::abs(static_cast<double*>(a.grad.data)[c])));
  }
}

TEST(Norm, BadArguments) {
  EXPECT_THROW(nn::LayerNorm<float>(0), Error);
  EXPECT_THROW(nn::LayerNorm<float>(4, 0.0), Error);
  EXPECT_THROW(nn::RMSNorm<float>(4, -1.0), Error);
  nn::LayerNorm<float> ln(4);
  std::vector<float> x(8, 1.0f), dx(8);
  ln.forward(x.data(), 2, dx.data());
  try {
    ln.backward(x.data(), x.data(), 3, dx.data());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backward over 3 rows, but the last forward had 2"), std::string::npos)
        << e.what();
  }
  nn::Norm<double> n(nn::NormKind::rms_norm, 5, 1e-6);
  EXPECT_EQ(n.parameters().size(), 1u);
  EXPECT_STREQ(nn::norm_kind_name(n.kind()), "rms_norm");
}

// Large enough (M·C ≥ 2^15) for the parallel row loops and the parallel column blocks of dγ/dβ
// (C = 130: three blocks, the last partial, and a row_sum tail): y, dx and every parameter
// gradient have the same bits on 1, 2 and 3 threads.
TEST(Norm, SameBitsForAnyThreadCount) {
  const std::int64_t M = 257, C = 130;
  const std::vector<float> x = to_f32(randn(static_cast<std::size_t>(M * C), 21, 2.0));
  const std::vector<float> dy = to_f32(randn(x.size(), 22));
  const int saved = omp_get_max_threads();
  for (nn::NormKind kind : {nn::NormKind::layer_norm, nn::NormKind::rms_norm}) {
    std::vector<std::vector<float>> first;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      nn::Norm<float> norm(kind, C, 1e-5);
      for (const nn::Parameter& p : norm.parameters()) {  // gains around 1, biases around 0
        const std::vector<double> r = randn(static_cast<std::size_t>(C), p.name == "weight" ? 31 : 32, 0.1);
        for (std::int64_t c = 0; c < C; ++c)
          static_cast<float*>(p.value.data)[c] = static_cast<float>((p.name == "weight" ? 1.0 : 0.0) + r[c]);
      }
      std::vector<float> y(x.size()), dx(x.size());
      norm.forward(x.data(), M, y.data());
      norm.zero_grad();
      norm.backward(x.data(), dy.data(), M, dx.data());
      std::vector<std::vector<float>> got{y, dx};
      for (const nn::Parameter& p : norm.parameters()) {
        const float* g = static_cast<const float*>(p.grad.data);
        got.emplace_back(g, g + C);
      }
      if (first.empty()) {
        first = got;
        continue;
      }
      for (std::size_t t = 0; t < got.size(); ++t)
        for (std::size_t i = 0; i < got[t].size(); ++i)
          ASSERT_EQ(std::bit_cast<std::uint32_t>(got[t][i]), std::bit_cast<std::uint32_t>(first[t][i]))
              << nn::norm_kind_name(kind) << " threads " << threads << " output " << t << " element " << i;
    }
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace attn::test
