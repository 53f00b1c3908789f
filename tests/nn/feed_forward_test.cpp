// nn::FeedForward (src/nn/feed_forward.cpp): forward against a composition written here (plain
// loops, the activations from their formulas), backward against fp64 finite differences for every
// activation with and without bias, f32 against f64, parameter names and counts.

#include <gtest/gtest.h>

#include <cmath>

#include "attn/error.hpp"
#include "attn/nn/feed_forward.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

using nn::Activation;

double act(Activation a, double x) {
  switch (a) {
    case Activation::relu: return x > 0 ? x : 0;
    case Activation::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::gelu_tanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::swiglu: return x / (1 + std::exp(-x));
  }
  return x;
}

const double* pv(const nn::Module& m, const char* name) {
  return static_cast<const double*>(m.parameter(name).value.data);
}

// y = FFN(x) by loops over the named parameters.
std::vector<double> naive_ffn(const nn::FeedForward<double>& f, const std::vector<double>& x, std::int64_t M) {
  const std::int64_t E = f.config().dim, F = f.config().hidden;
  const bool g = f.gated(), bias = f.config().bias;
  const double* w1 = pv(f, g ? "gate_proj.weight" : "linear1.weight");
  const double* b1 = bias ? pv(f, g ? "gate_proj.bias" : "linear1.bias") : nullptr;
  const double* wu = g ? pv(f, "up_proj.weight") : nullptr;
  const double* bu = g && bias ? pv(f, "up_proj.bias") : nullptr;
  const double* w2 = pv(f, g ? "down_proj.weight" : "linear2.weight");
  const double* b2 = bias ? pv(f, g ? "down_proj.bias" : "linear2.bias") : nullptr;
  std::vector<double> y(static_cast<std::size_t>(M * E));
  for (std::int64_t m = 0; m < M; ++m) {
    std::vector<double> h(static_cast<std::size_t>(F));
    for (std::int64_t j = 0; j < F; ++j) {
      double a = b1 ? b1[j] : 0, u = bu ? bu[j] : 0;
      for (std::int64_t i = 0; i < E; ++i) {
        a += w1[j * E + i] * x[m * E + i];
        if (g) u += wu[j * E + i] * x[m * E + i];
      }
      h[j] = g ? act(Activation::swiglu, a) * u : act(f.config().activation, a);
    }
    for (std::int64_t o = 0; o < E; ++o) {
      double s = b2 ? b2[o] : 0;
      for (std::int64_t j = 0; j < F; ++j) s += w2[o * F + j] * h[j];
      y[m * E + o] = s;
    }
  }
  return y;
}

TEST(FeedForward, ForwardAndBackwardEveryActivation) {
  for (Activation a : {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::swiglu})
    for (bool bias : {true, false}) {
      const std::int64_t M = 7, E = 5, F = 9;
      nn::FeedForward<double> f({E, F, a, bias, 3});
      randomize_params(f, 21);
      const std::string what = std::string(nn::activation_name(a)) + (bias ? " bias" : " no bias");
      std::vector<double> x = randn(static_cast<std::size_t>(M * E), 4);
      const std::vector<double> R = randn(x.size(), 6);
      std::vector<double> y(x.size());
      auto loss = [&] {
        f.forward(x.data(), M, y.data());
        return dot(R, y.data());
      };
      loss();
      const std::vector<double> ref = naive_ffn(f, x, M);
      for (std::size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 1e-12) << what;
      f.zero_grad();
      std::vector<double> dx(x.size());
      f.backward(x.data(), R.data(), M, dx.data());
      EXPECT_LE(fd_error(x.data(), dx.data(), M * E, loss), 1e-7) << what << ": dx";
      expect_param_grads(f, loss, 1e-7, what);
      EXPECT_EQ(f.num_parameters(),
                (a == Activation::swiglu ? 3 : 2) * E * F + (bias ? (a == Activation::swiglu ? 2 * F : F) + E : 0))
          << what;
    }
}

TEST(FeedForward, F32MatchesF64) {
  const std::int64_t M = 63, E = 65, F = 127;
  for (Activation a : {Activation::gelu, Activation::swiglu}) {
    nn::FeedForward<double> f64({E, F, a, true, 5});
    nn::FeedForward<float> f32({E, F, a, true, 5});
    randomize_params(f64, 1, 0.2);
    const auto p64 = f64.parameters(), p32 = f32.parameters();
    for (std::size_t i = 0; i < p64.size(); ++i)
      for (std::int64_t e = 0; e < p64[i].value.numel(); ++e) {
        static_cast<float*>(p32[i].value.data)[e] = static_cast<float>(static_cast<double*>(p64[i].value.data)[e]);
        static_cast<double*>(p64[i].value.data)[e] = static_cast<float*>(p32[i].value.data)[e];
      }
    const std::vector<float> x = to_f32(randn(static_cast<std::size_t>(M * E), 2)),
                             dy = to_f32(randn(static_cast<std::size_t>(M * E), 3));
    const std::vector<double> xd(x.begin(), x.end()), dyd(dy.begin(), dy.end());
    std::vector<float> y(x.size()), dx(x.size());
    std::vector<double> yd(x.size()), dxd(x.size());
    f32.forward(x.data(), M, y.data());
    f64.forward(xd.data(), M, yd.data());
    f32.backward(x.data(), dy.data(), M, dx.data());
    f64.backward(xd.data(), dyd.data(), M, dxd.data());
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y[i], yd[i], 1e-4 * (1 + std::abs(yd[i]))) << nn::activation_name(a);
      ASSERT_NEAR(dx[i], dxd[i], 1e-4 * (1 + std::abs(dxd[i]))) << nn::activation_name(a);
    }
    for (std::size_t i = 0; i < p64.size(); ++i)
      for (std::int64_t e = 0; e < p64[i].grad.numel(); ++e) {
        const double g = static_cast<double*>(p64[i].grad.data)[e];
        ASSERT_NEAR(static_cast<float*>(p32[i].grad.data)[e], g, 1e-3 * (1 + std::abs(g))) << p64[i].name;
      }
  }
}

TEST(FeedForward, NamesAndErrors) {
  nn::FeedForward<float> f({4, 6, Activation::swiglu, false, 0});
  std::vector<std::string> names;
  for (const nn::Parameter& p : f.parameters()) names.push_back(p.name + p.value.shape_string());
  EXPECT_EQ(names,
            (std::vector<std::string>{"gate_proj.weight[6, 4]", "up_proj.weight[6, 4]", "down_proj.weight[4, 6]"}));
  nn::FeedForward<float> g({4, 6, Activation::relu, true, 0});
  EXPECT_EQ(g.parameters()[0].name, "linear1.weight");
  EXPECT_THROW(nn::FeedForward<float>({0, 6}), Error);
  EXPECT_THROW(nn::FeedForward<float>({4, 0}), Error);
  std::vector<float> x(8), y(8);
  g.forward(x.data(), 2, y.data());
  EXPECT_THROW(g.backward(x.data(), y.data(), 1, x.data()), Error);
}

}  // namespace
}  // namespace attn::test
