// AdamW, clip_grad_norm, LrSchedule (src/nn/optim.cpp): updates against the formulas written here,
// decay only where configured, the global-norm clipping, schedule values.

#include <gtest/gtest.h>

#include <cmath>

#include "attn/error.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/optim.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

TEST(AdamW, MatchesTheFormulaOverSteps) {
  nn::Linear<double> lin(3, 2, true, 1);
  nn::AdamWConfig cfg;
  cfg.weight_decay = 0.1;
  nn::AdamW opt(lin, cfg);
  const std::vector<nn::Parameter> ps = lin.parameters();
  std::vector<std::vector<double>> theta, m, v;
  for (const nn::Parameter& p : ps) {
    const double* d = static_cast<const double*>(p.value.data);
    theta.emplace_back(d, d + p.value.numel());
    m.emplace_back(p.value.numel(), 0.0);
    v.emplace_back(p.value.numel(), 0.0);
  }
  for (int t = 1; t <= 4; ++t) {
    const double lr = 0.01 * t;
    for (std::size_t i = 0; i < ps.size(); ++i) {
      const std::vector<double> g = randn(static_cast<std::size_t>(ps[i].grad.numel()), 10 * t + i);
      std::copy(g.begin(), g.end(), static_cast<double*>(ps[i].grad.data));
      const double wd = ps[i].name == "weight" ? 0.1 : 0.0;  // biases do not decay
      for (std::size_t e = 0; e < g.size(); ++e) {
        theta[i][e] -= lr * wd * theta[i][e];
        m[i][e] = 0.9 * m[i][e] + 0.1 * g[e];
        v[i][e] = 0.999 * v[i][e] + 0.001 * g[e] * g[e];
        const double mh = m[i][e] / (1 - std::pow(0.9, t)), vh = v[i][e] / (1 - std::pow(0.999, t));
        theta[i][e] -= lr * mh / (std::sqrt(vh) + 1e-8);
      }
    }
    opt.step(lr);
    for (std::size_t i = 0; i < ps.size(); ++i)
      for (std::size_t e = 0; e < theta[i].size(); ++e)
        ASSERT_NEAR(static_cast<double*>(ps[i].value.data)[e], theta[i][e], 1e-14) << ps[i].name << " step " << t;
  }
  EXPECT_EQ(opt.steps(), 4);
  EXPECT_EQ(opt.state().size(), 4u);
  EXPECT_EQ(opt.state()[0].name, "exp_avg.weight");
}

TEST(AdamW, DecayPredicateAndErrors) {
  nn::Linear<float> lin(2, 2, true, 0);
  nn::AdamWConfig cfg;
  cfg.weight_decay = 0.5;
  cfg.decays = [](const nn::Parameter& p) { return p.name == "bias"; };
  float* b = static_cast<float*>(lin.parameter("bias").value.data);
  b[0] = 1.0f;
  const float w0 = static_cast<float*>(lin.parameter("weight").value.data)[0];
  nn::AdamW opt(lin, cfg);  // zero gradients: only decay moves anything
  opt.step(0.1);
  EXPECT_FLOAT_EQ(b[0], 0.95f);
  EXPECT_EQ(static_cast<float*>(lin.parameter("weight").value.data)[0], w0);
  nn::AdamWConfig bad;
  bad.beta1 = 1.0;
  EXPECT_THROW(nn::AdamW(lin, bad), Error);
}

TEST(ClipGradNorm, ScalesToTheMaxNorm) {
  nn::Linear<double> lin(2, 2, true, 0);
  for (const nn::Parameter& p : lin.parameters())
    for (std::int64_t i = 0; i < p.grad.numel(); ++i) static_cast<double*>(p.grad.data)[i] = 2.0;  // ‖g‖ = √(6·4)
  EXPECT_NEAR(nn::clip_grad_norm(lin, 100.0), std::sqrt(24.0), 1e-12);
  EXPECT_EQ(static_cast<double*>(lin.parameter("bias").grad.data)[0], 2.0);  // below: unchanged
  EXPECT_NEAR(nn::clip_grad_norm(lin, 1.0), std::sqrt(24.0), 1e-12);
  double sq = 0;
  for (const nn::Parameter& p : lin.parameters())
    for (std::int64_t i = 0; i < p.grad.numel(); ++i) sq += std::pow(static_cast<double*>(p.grad.data)[i], 2);
  EXPECT_NEAR(std::sqrt(sq), 1.0, 1e-6);
  EXPECT_THROW(nn::clip_grad_norm(lin, 0.0), Error);
}

TEST(LrSchedule, WarmupThenCosine) {
  const nn::LrSchedule s{1e-3, 10, 110, 1e-5};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);
  EXPECT_NEAR(s.at(60), 1e-5 + 0.5 * (1e-3 - 1e-5), 1e-15);
  EXPECT_NEAR(s.at(109), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + std::cos(M_PI * 99 / 100)), 1e-15);
  EXPECT_DOUBLE_EQ(s.at(110), 1e-5);
  EXPECT_DOUBLE_EQ(s.at(1000), 1e-5);
  for (std::int64_t i = 10; i < 109; ++i) EXPECT_GE(s.at(i), s.at(i + 1));
}

}  // namespace
}  // namespace attn::test
