#pragma once
// The feature maps φ of linear attention in fp64, one row at a time (docs/linear_attention.md), and
// their vector-Jacobian products: the definitions the reference uses and the cpu path is tested
// against.
//   elu:   φ(x)_d = x_d + 1 (x_d > 0), e^{x_d} otherwise                 (Katharopoulos et al. 2020)
//   favor: φ(x)_l = exp(c·ω_lᵀx − c²‖x‖²/2) / √m,  c = D^(-1/4)          (Choromanski et al. 2021)

#include <cmath>
#include <cstdint>
#include <vector>

#include "attn/linear_attention.hpp"

namespace attn::linear {

/// The projection ω [m, D] as fp64, row-major (empty for elu).
struct FeatureSpec {
  FeatureMap map = FeatureMap::elu;
  std::int64_t D = 0, F = 0;
  double c = 1.0;             // favor input scale D^(-1/4)
  std::vector<double> omega;  // [F, D]
};

/// phi[0..F) = φ(x[0..D)).
inline void features(const FeatureSpec& s, const double* x, double* phi) {
  if (s.map == FeatureMap::elu) {
    for (std::int64_t d = 0; d < s.D; ++d) phi[d] = x[d] > 0.0 ? x[d] + 1.0 : std::exp(x[d]);
    return;
  }
  double sq = 0.0;
  for (std::int64_t d = 0; d < s.D; ++d) sq += x[d] * x[d];
  const double shift = 0.5 * s.c * s.c * sq, norm = 1.0 / std::sqrt(static_cast<double>(s.F));
  for (std::int64_t l = 0; l < s.F; ++l) {
    double u = 0.0;
    for (std::int64_t d = 0; d < s.D; ++d) u += s.omega[static_cast<std::size_t>(l * s.D + d)] * x[d];
    phi[l] = std::exp(s.c * u - shift) * norm;
  }
}

/// dx[0..D) += (∂φ/∂x)ᵀ dphi, with phi = φ(x).
inline void features_vjp(const FeatureSpec& s, const double* x, const double* phi, const double* dphi, double* dx) {
  if (s.map == FeatureMap::elu) {
    for (std::int64_t d = 0; d < s.D; ++d) dx[d] += dphi[d] * (x[d] > 0.0 ? 1.0 : phi[d]);
    return;
  }
  // ∂φ_l/∂x = φ_l (c ω_l − c² x)
  double total = 0.0;
  for (std::int64_t l = 0; l < s.F; ++l) {
    const double w = dphi[l] * phi[l];
    total += w;
    for (std::int64_t d = 0; d < s.D; ++d) dx[d] += s.c * w * s.omega[static_cast<std::size_t>(l * s.D + d)];
  }
  for (std::int64_t d = 0; d < s.D; ++d) dx[d] -= s.c * s.c * total * x[d];
}

}  // namespace attn::linear
