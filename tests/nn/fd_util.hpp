#pragma once
// Finite-difference checks for the nn layers' explicit backward passes: a loss L = Σ y ∘ R of an
// fp64 module's output, central differences of L in every input and parameter element against
// the gradients the backward pass produced, and seeded random buffers.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "attn/nn/module.hpp"

namespace attn::test {

inline std::vector<double> randn(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = d(rng);
  return v;
}

inline std::vector<float> to_f32(const std::vector<double>& v) { return {v.begin(), v.end()}; }

inline double dot(const std::vector<double>& a, const double* b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// Max over elements of |fd − g| / (1 + |g|), fd the central difference (step h) of loss() in
/// p[i] and g[i] the analytic gradient.
inline double fd_error(double* p, const double* g, std::int64_t n, const std::function<double()>& loss,
                       double h = 1e-5) {
  double worst = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = p[i];
    p[i] = v + h;
    const double lp = loss();
    p[i] = v - h;
    const double lm = loss();
    p[i] = v;
    const double fd = (lp - lm) / (2 * h);
    worst = std::max(worst, std::abs(fd - g[i]) / (1.0 + std::abs(g[i])));
  }
  return worst;
}

/// fd_error of every parameter of `m` (its gradients must hold dL/dθ already); fails naming the
/// parameter above `tol`.
inline void expect_param_grads(const nn::Module& m, const std::function<double()>& loss, double tol,
                               const std::string& what) {
  for (const nn::Parameter& p : m.parameters()) {
    // The loss runs forward, which leaves the gradients alone; copy them first anyway.
    std::vector<double> g(static_cast<const double*>(p.grad.data),
                          static_cast<const double*>(p.grad.data) + p.grad.numel());
    const double err = fd_error(static_cast<double*>(p.value.data), g.data(), p.value.numel(), loss);
    EXPECT_LE(err, tol) << what << ": parameter " << p.name;
  }
}

/// Gives every parameter random values (so that zero biases and unit gains are exercised too).
inline void randomize_params(const nn::Module& m, std::uint64_t seed, double scale = 0.5) {
  for (const nn::Parameter& p : m.parameters()) {
    const std::vector<double> v = randn(static_cast<std::size_t>(p.value.numel()), seed++, scale);
    std::copy(v.begin(), v.end(), static_cast<double*>(p.value.data));
  }
}

}  // namespace attn::test
