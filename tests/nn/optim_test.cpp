// AdamW, clip_grad_norm, LrSchedule (src/nn/optim.cpp): updates against the formulas written here,
// decay only where configured, the global-norm clipping, schedule values; the chunked parallel passes
// (AdamW's update, the norm) give the same bits on 1-3 threads, and the fused clip equals clipping first.

#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>

#include "attn/error.hpp"
#include "attn/nn/feed_forward.hpp"
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

// A module with tensors over several chunks (fc1/fc2 38 400 elements) and small ones (biases):
// enough elements for the parallel passes.
nn::FeedForward<float> big_module() { return nn::FeedForward<float>({96, 400, nn::Activation::relu, true, 7}); }

void fill_grads(const nn::Module& m, std::uint64_t seed) {
  for (const nn::Parameter& p : m.parameters()) {
    const std::vector<double> g = randn(static_cast<std::size_t>(p.grad.numel()), seed++);
    float* d = static_cast<float*>(p.grad.data);
    for (std::size_t i = 0; i < g.size(); ++i) d[i] = static_cast<float>(g[i]);
  }
}

std::vector<float> values(const nn::Module& m) {
  std::vector<float> all;
  for (const nn::Parameter& p : m.parameters()) {
    const float* d = static_cast<const float*>(p.value.data);
    all.insert(all.end(), d, d + p.value.numel());
  }
  return all;
}

TEST(AdamW, ParallelPassMatchesAPlainLoopBitwiseOnAnyThreadCount) {
  const int saved = omp_get_max_threads();
  const double scales[3] = {1.0, 0.37, 1.0};
  // The reference: one plain loop per tensor in float, the formula of optim.hpp in its order.
  nn::FeedForward<float> ref = big_module();
  const std::vector<nn::Parameter> rp = ref.parameters();
  std::vector<std::vector<float>> m(rp.size()), v(rp.size());
  for (std::size_t i = 0; i < rp.size(); ++i) m[i].assign(rp[i].value.numel(), 0.f), v[i] = m[i];
  for (int t = 1; t <= 3; ++t) {
    fill_grads(ref, 100 * t);
    const double lr = 0.01 * t, bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
    for (std::size_t i = 0; i < rp.size(); ++i) {
      const double wd = rp[i].value.rank >= 2 ? 0.01 : 0.0;
      const float decay = static_cast<float>(1.0 - lr * wd), b1 = 0.9f, b2 = 0.999f;
      const float step = static_cast<float>(lr / bc1), c2 = static_cast<float>(1.0 / std::sqrt(bc2)), eps = 1e-8f;
      float* th = static_cast<float*>(rp[i].value.data);
      const float* g = static_cast<const float*>(rp[i].grad.data);
      for (std::int64_t e = 0; e < rp[i].value.numel(); ++e) {
        const float gi = g[e] * static_cast<float>(scales[t - 1]);
        m[i][e] = b1 * m[i][e] + (1.f - b1) * gi;
        v[i][e] = b2 * v[i][e] + (1.f - b2) * gi * gi;
        th[e] = th[e] * decay - step * m[i][e] / (std::sqrt(v[i][e]) * c2 + eps);
      }
    }
  }
  const std::vector<float> want = values(ref);
  for (int threads = 1; threads <= 3; ++threads) {
    omp_set_num_threads(threads);
    nn::FeedForward<float> mod = big_module();
    nn::AdamW opt(mod);
    for (int t = 1; t <= 3; ++t) {
      fill_grads(mod, 100 * t);
      opt.step(0.01 * t, scales[t - 1]);
    }
    const std::vector<float> got = values(mod);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << threads << " threads";
  }
  omp_set_num_threads(saved);
  nn::AdamW opt(ref);
  EXPECT_THROW(opt.step(0.01, -1.0), Error);
}

TEST(ClipGradNorm, SameBitsOnAnyThreadCountAndTheFusedClipEqualsClippingFirst) {
  const int saved = omp_get_max_threads();
  nn::FeedForward<float> mod = big_module();
  fill_grads(mod, 5);
  double sq = 0;  // the plain sum, for the value
  for (const nn::Parameter& p : mod.parameters())
    for (std::int64_t i = 0; i < p.grad.numel(); ++i) sq += std::pow(static_cast<const float*>(p.grad.data)[i], 2.0);
  omp_set_num_threads(1);
  const double n1 = nn::grad_norm(mod);
  EXPECT_NEAR(n1, std::sqrt(sq), 1e-12 * std::sqrt(sq));
  for (int threads = 2; threads <= 3; ++threads) {
    omp_set_num_threads(threads);
    EXPECT_EQ(nn::grad_norm(mod), n1) << threads << " threads";
  }
  // clip_grad_norm then step(lr) against step(lr, clip_scale) on unclipped gradients: same bits.
  nn::FeedForward<float> a = big_module(), b = big_module();
  nn::AdamW oa(a), ob(b);
  for (int t = 1; t <= 2; ++t) {
    fill_grads(a, 50 * t);
    fill_grads(b, 50 * t);
    EXPECT_EQ(nn::clip_grad_norm(a, 2.0), nn::grad_norm(b));  // the norm before clipping
    oa.step(0.01);
    ob.step(0.01, nn::clip_scale(nn::grad_norm(b), 2.0));
  }
  const std::vector<float> va = values(a), vb = values(b);
  EXPECT_EQ(std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)), 0);
  EXPECT_LT(nn::clip_scale(std::sqrt(sq), 2.0), 1.0);  // the clip was active
  EXPECT_EQ(nn::clip_scale(1.5, 2.0), 1.0);
  EXPECT_THROW(nn::clip_scale(1.0, 0.0), Error);
  omp_set_num_threads(saved);
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
