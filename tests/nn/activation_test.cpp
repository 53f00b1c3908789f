// Activations (src/nn/activation.cpp): known values, derivatives against fp64 finite differences,
// the tails (no cancellation, no NaN for huge |a|), f32 against f64, names.

#include <gtest/gtest.h>

#include <cmath>

#include "attn/error.hpp"
#include "attn/nn/activation.hpp"

namespace attn::test {
namespace {

using nn::Activation;

constexpr Activation kAll[] = {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::swiglu};

TEST(Activation, KnownValues) {
  // Φ(1) = 0.8413447460685429, Φ(−10) = 7.619853024160527e−24 (standard normal tables).
  EXPECT_NEAR(nn::activation_value(Activation::gelu, 1.0), 0.8413447460685429, 1e-15);
  EXPECT_NEAR(nn::activation_value(Activation::gelu, -1.0), -1.0 + 0.8413447460685429, 1e-15);
  EXPECT_NEAR(nn::activation_value(Activation::gelu, -10.0) / -7.619853024160527e-23, 1.0, 1e-12);
  // ½·(1 + tanh(√(2/π)·1.044715)) = 0.8411919906082768.
  EXPECT_NEAR(nn::activation_value(Activation::gelu_tanh, 1.0), 0.8411919906082768, 1e-14);
  EXPECT_NEAR(nn::silu(1.0), 1.0 / (1.0 + std::exp(-1.0)), 1e-15);
  EXPECT_EQ(nn::activation_value(Activation::relu, -2.0), 0.0);
  EXPECT_EQ(nn::activation_value(Activation::relu, 2.0), 2.0);
  EXPECT_EQ(nn::activation_derivative(Activation::relu, 0.0), 0.0);
  EXPECT_EQ(nn::activation_value(Activation::gelu, 0.0), 0.0);
  EXPECT_EQ(nn::activation_derivative(Activation::gelu, 0.0), 0.5);
  EXPECT_EQ(nn::activation_derivative(Activation::gelu_tanh, 0.0), 0.5);
}

TEST(Activation, DerivativesMatchFiniteDifferences) {
  for (Activation a : kAll)
    for (double x : {-9.0, -4.2, -3.0, -1.3, -0.5, -1e-3, 1e-3, 0.2, 0.7, 1.0, 2.5, 5.0, 8.0}) {
      if (a == Activation::relu && std::abs(x) < 1e-2) continue;  // the kink
      const double h = 1e-6;
      const double fd = (nn::activation_value(a, x + h) - nn::activation_value(a, x - h)) / (2 * h);
      EXPECT_NEAR(nn::activation_derivative(a, x), fd, 1e-8) << nn::activation_name(a) << " at " << x;
    }
}

TEST(Activation, TailsAreFiniteAndExact) {
  for (Activation a : kAll)
    for (float x : {-1e30f, -1e13f, -1e4f, -100.0f, 100.0f, 1e4f, 1e13f, 1e30f}) {
      const float y = nn::activation_value(a, x), d = nn::activation_derivative(a, x);
      ASSERT_TRUE(std::isfinite(y) && std::isfinite(d))
          << nn::activation_name(a) << " at " << x << ": " << y << ", " << d;
      if (x > 0) {
        EXPECT_EQ(y, x) << nn::activation_name(a) << " at " << x;
        EXPECT_EQ(d, 1.0f) << nn::activation_name(a) << " at " << x;
      } else {  // 0, or silu's true tail: silu(−100) = −100·e⁻¹⁰⁰ = −3.7·10⁻⁴² is a subnormal
        EXPECT_LE(std::abs(y), 1e-40f) << nn::activation_name(a) << " at " << x;
        EXPECT_LE(std::abs(d), 1e-40f) << nn::activation_name(a) << " at " << x;
      }
    }
  // The negative tail of gelu is tiny but not flushed to zero where fp32 can hold it.
  EXPECT_LT(nn::activation_value(Activation::gelu, -5.0f), 0.0f);
  EXPECT_NEAR(nn::activation_value(Activation::gelu, -5.0f) / -1.4333e-6f, 1.0f, 1e-3f);
}

TEST(Activation, F32MatchesF64) {
  for (Activation a : kAll)
    for (double x = -12.0; x <= 12.0; x += 0.37) {
      const double y = nn::activation_value(a, x), d = nn::activation_derivative(a, x);
      EXPECT_NEAR(nn::activation_value(a, static_cast<float>(x)), y, 1e-6 * (1 + std::abs(y)))
          << nn::activation_name(a);
      EXPECT_NEAR(nn::activation_derivative(a, static_cast<float>(x)), d, 1e-6 * (1 + std::abs(d)))
          << nn::activation_name(a);
    }
}

TEST(Activation, Names) {
  for (Activation a : kAll) EXPECT_EQ(nn::parse_activation(nn::activation_name(a)), a);
  try {
    nn::parse_activation("swish");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "activation");
    EXPECT_NE(std::string(e.what()).find("relu, gelu, gelu_tanh, swiglu"), std::string::npos);
  }
}

}  // namespace
}  // namespace attn::test
