// The activation row passes (src/nn/activation_rows.hpp) on every ISA the CPU has, against the
// fp64 forms written here (gelu by std::erfc, the tanh form, silu, relu) on the edge cases — 0,
// ±tiny and subnormal, where erfc and exp saturate or underflow, ±large, ±FLT_MAX, ±inf, NaN — and
// a sweep; tails (n = 1, 7, 63, 65, 127) give each element the bits of the full pass; in place;
// the fp64 path; swiglu's gated pair.

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "attn/nn/activation.hpp"
#include "nn/activation_rows.hpp"

namespace attn::test {
namespace {

using nn::Activation;
using nn::detail::EltIsa;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kC = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;  // √(2/π)

// The forms in fp64, with the value, the derivative, the largest term of each (the scale of its
// rounding error) and a condition number: how much a relative input error grows.
struct Ref {
  double y, dy, y_scale, dy_scale, cond;
};

double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

Ref reference(Activation a, double x) {
  if (std::isnan(x)) return {x, a == Activation::relu ? 0.0 : x, 0, 0, 0};
  if (std::isinf(x)) {
    if (a == Activation::relu || x > 0) return {x > 0 ? x : 0.0, x > 0 ? 1.0 : 0.0, 0, 0, 0};
    return {0, 0, 0, 0, 0};  // the limits at −inf
  }
  switch (a) {
    case Activation::relu: return {x > 0 ? x : 0.0, x > 0 ? 1.0 : 0.0, 0, 0, 0};
    case Activation::gelu: {
      const double cdf = 0.5 * std::erfc(-x / std::numbers::sqrt2);
      const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi);
      return {x * cdf, cdf + x * pdf, std::abs(x * cdf), std::max(cdf, std::abs(x * pdf)), 1 + x * x};
    }
    case Activation::gelu_tanh: {
      const double u = kC * (x + 0.044715 * x * x * x), s = sigmoid(2 * u), c = std::cosh(u);
      const double t = 2 * x * kC * (1 + 3 * 0.044715 * x * x) * 0.25 / (c * c);  // a·2·σ(2u)σ(−2u)·u'
      return {x * s, s + t, std::abs(x * s), std::max(s, std::abs(t)), 1 + std::abs(2 * u) + x * x};
    }
    case Activation::swiglu: {  // silu
      const double s = sigmoid(x), c = std::cosh(x / 2), t = x * 0.25 / (c * c);
      return {x * s, s + t, std::abs(x * s), std::max(s, std::abs(t)), 1 + std::abs(x)};
    }
  }
  return {};
}

std::vector<float> edge_values() {
  std::vector<float> v = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN()};
  for (float x : {1e-30f, 1e-40f, FLT_MIN, FLT_TRUE_MIN, 1e-7f, 0.5f, 0.7518f, 1.0f, 2.5f, 4.0f, 5.0f, 5.5f, 6.0f, 9.0f,
                  10.0f, 13.5f, 14.2f, 14.5f, 20.0f, 30.0f, 87.0f, 89.0f, 100.0f, 104.0f, 110.0f, 1e4f, 1e13f, 1e30f,
                  FLT_MAX, std::numeric_limits<float>::infinity()}) {
    v.push_back(x);
    v.push_back(-x);
  }
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-16.0f, 16.0f);
  for (int i = 0; i < 300; ++i) v.push_back(u(gen));
  return v;
}

constexpr Activation kAll[] = {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::swiglu};

// |got − ref| ≤ rel·cond·scale + floor (scale: the largest term, so a sum that cancels to ~0 is
// judged by its terms); NaN must be NaN and ±inf exact (the exact finite tails: SaturatedTailsAreExact).
template <class T>
void expect_close(T got, double ref, double scale, double cond, double rel, double floor, const char* what,
                  Activation a, double x, const char* isa) {
  if (std::isnan(ref)) {
    EXPECT_TRUE(std::isnan(got)) << what << " " << nn::activation_name(a) << "(" << x << ") on " << isa << " = " << got;
  } else if (std::isinf(ref)) {
    EXPECT_EQ(static_cast<double>(got), ref) << what << " " << nn::activation_name(a) << "(" << x << ") on " << isa;
  } else {
    EXPECT_NEAR(static_cast<double>(got), ref, rel * cond * scale + floor)
        << what << " " << nn::activation_name(a) << "(" << x << ") on " << isa;
  }
}

// The fp32 error budget: libmvec's erfcf/expf (a few ulps) and the rounded products, times the
// condition number; values below 4·FLT_MIN (the subnormal range) only to that floor.
constexpr double kRelF32 = 5e-7, kFloorF32 = 4 * static_cast<double>(FLT_MIN);

TEST(ActivationRows, EveryIsaMatchesFp64OnEdgeCases) {
  const std::vector<float> x = edge_values();
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  std::vector<float> dh(x.size());
  std::mt19937 gen(3);
  std::normal_distribution<float> nd;
  for (float& v : dh) v = nd(gen);
  for (EltIsa isa : nn::detail::elt_isas()) {
    const char* name = nn::detail::elt_isa_name(isa);
    for (Activation a : kAll) {
      std::vector<float> y(x.size()), da(x.size()), ones(x.size(), 1.0f), d1(x.size());
      nn::detail::activation_forward(a, x.data(), y.data(), n, isa);
      nn::detail::activation_backward(a, x.data(), ones.data(), d1.data(), n, isa);
      nn::detail::activation_backward(a, x.data(), dh.data(), da.data(), n, isa);
      for (std::size_t i = 0; i < x.size(); ++i) {
        const Ref r = reference(a, x[i]);
        expect_close(y[i], r.y, r.y_scale, r.cond, kRelF32, kFloorF32, "value", a, x[i], name);
        expect_close(d1[i], r.dy, r.dy_scale, r.cond, kRelF32, kFloorF32, "derivative", a, x[i], name);
        if (!std::isnan(d1[i])) {
          EXPECT_EQ(da[i], dh[i] * d1[i]) << "dh∘act' " << nn::activation_name(a) << " on " << name;
        }
      }
    }
  }
}

TEST(ActivationRows, SaturatedTailsAreExact) {
  // Beyond these points the fp32 results are exactly a (or 1) and 0: no tiny leftovers, no NaN.
  struct Tail {
    Activation a;
    float pos, neg;
  };
  for (EltIsa isa : nn::detail::elt_isas())
    for (Tail t : {Tail{Activation::gelu, 10, -20}, Tail{Activation::gelu_tanh, 10, -20}, Tail{Activation::swiglu, 20, -110}})
      for (float s : {1.0f, 1.5f, 10.0f, 1e10f, 1e30f, std::numeric_limits<float>::infinity()}) {
        const float x[2] = {t.pos * s, t.neg * s};
        float y[2], d[2];
        const float one[2] = {1, 1};
        nn::detail::activation_forward(t.a, x, y, 2, isa);
        nn::detail::activation_backward(t.a, x, one, d, 2, isa);
        EXPECT_EQ(y[0], x[0]) << nn::activation_name(t.a) << "(" << x[0] << ") on " << nn::detail::elt_isa_name(isa);
        EXPECT_EQ(y[1], 0.0f) << nn::activation_name(t.a) << "(" << x[1] << ") on " << nn::detail::elt_isa_name(isa);
        EXPECT_EQ(d[0], 1.0f) << nn::activation_name(t.a) << "'(" << x[0] << ") on " << nn::detail::elt_isa_name(isa);
        EXPECT_EQ(d[1], 0.0f) << nn::activation_name(t.a) << "'(" << x[1] << ") on " << nn::detail::elt_isa_name(isa);
      }
}

TEST(ActivationRows, TailsAndInPlaceGiveTheSameBits) {
  std::vector<float> x = edge_values();
  x.resize(127);
  for (EltIsa isa : nn::detail::elt_isas())
    for (Activation a : kAll) {
      std::vector<float> full(x.size()), dfull(x.size()), dh(x.size(), 0.75f);
      nn::detail::activation_forward(a, x.data(), full.data(), 127, isa);
      nn::detail::activation_backward(a, x.data(), dh.data(), dfull.data(), 127, isa);
      for (std::int64_t n : {1, 7, 63, 65, 127}) {
        const std::int64_t off = 127 - n;  // the last n: a different lane alignment than the full pass
        std::vector<float> y(x.begin() + off, x.end()), d(static_cast<std::size_t>(n));
        nn::detail::activation_backward(a, y.data(), dh.data(), d.data(), n, isa);
        nn::detail::activation_forward(a, y.data(), y.data(), n, isa);  // in place
        EXPECT_EQ(std::memcmp(y.data(), full.data() + off, y.size() * sizeof(float)), 0)
            << nn::activation_name(a) << " n = " << n << " on " << nn::detail::elt_isa_name(isa);
        EXPECT_EQ(std::memcmp(d.data(), dfull.data() + off, d.size() * sizeof(float)), 0)
            << nn::activation_name(a) << "' n = " << n << " on " << nn::detail::elt_isa_name(isa);
      }
    }
}

TEST(ActivationRows, Fp64PathMatchesFp64Forms) {
  std::vector<double> x;
  for (float v : edge_values()) x.push_back(v);
  for (double v : {1e-300, -1e-300, 37.0, -37.0, 38.5, -38.5, 1e200, -1e200, 1e308, -1e308}) x.push_back(v);
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  for (Activation a : kAll) {
    std::vector<double> y(x.size()), d(x.size()), ones(x.size(), 1.0);
    nn::detail::activation_forward(a, x.data(), y.data(), n);
    nn::detail::activation_backward(a, x.data(), ones.data(), d.data(), n);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const Ref r = reference(a, x[i]);
      if (std::abs(x[i]) > 1e100 && a != Activation::relu) {  // the reference's own cosh/x³ overflow: limits
        EXPECT_EQ(y[i], x[i] > 0 ? x[i] : 0.0) << nn::activation_name(a) << "(" << x[i] << ")";
        EXPECT_EQ(d[i], x[i] > 0 ? 1.0 : 0.0) << nn::activation_name(a) << "'(" << x[i] << ")";
        continue;
      }
      expect_close(y[i], r.y, r.y_scale, r.cond, 1e-14, 1e-300, "value", a, x[i], "fp64");
      expect_close(d[i], r.dy, r.dy_scale, r.cond, 1e-14, 1e-300, "derivative", a, x[i], "fp64");
    }
  }
}

TEST(ActivationRows, SwigluMatchesItsFormula) {
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const std::int64_t n = 65;
  std::vector<float> g(n), u(n), dh(n);
  for (std::int64_t i = 0; i < n; ++i) g[i] = nd(gen), u[i] = nd(gen), dh[i] = nd(gen);
  g[0] = -std::numeric_limits<float>::infinity();
  g[1] = 1e30f;
  for (EltIsa isa : nn::detail::elt_isas()) {
    std::vector<float> h(n), dg(n), du(n);
    nn::detail::swiglu_forward(g.data(), u.data(), h.data(), n, isa);
    nn::detail::swiglu_backward(g.data(), u.data(), dh.data(), dg.data(), du.data(), n, isa);
    for (std::int64_t i = 0; i < n; ++i) {
      const Ref r = reference(Activation::swiglu, g[i]);
      const double tol = 4 * kRelF32 * r.cond;
      EXPECT_NEAR(h[i], r.y * u[i], tol * std::abs(r.y_scale * u[i]) + kFloorF32) << i << " on " << nn::detail::elt_isa_name(isa);
      EXPECT_NEAR(dg[i], dh[i] * u[i] * r.dy, tol * std::abs(dh[i] * u[i] * r.dy_scale) + kFloorF32) << i;
      EXPECT_NEAR(du[i], dh[i] * r.y, tol * std::abs(dh[i] * r.y_scale) + kFloorF32) << i;
    }
  }
}

TEST(ActivationRows, IsaList) {
  const std::vector<EltIsa>& isas = nn::detail::elt_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), EltIsa::scalar);
#if defined(__x86_64__) && defined(__GLIBC__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    EXPECT_EQ(isas.front(), EltIsa::avx512);
  }
#endif
}

}  // namespace
}  // namespace attn::test
