#pragma once
// The score modifiers of DESIGN.md §5, steps 2–5, each with its derivative for backward:
//   softcap   s -> c·tanh(s/c)                 d/ds = 1 - tanh²(s/c)
//   ALiBi     s -> s - slope_h·|i + off_b - j|  d/ds = 1
//   bias      s -> s + bias[b, h, i, j]         d/ds = 1 (and d/dbias = 1)
//   score_mod s -> value(s, b, h, i, j)         d/ds = grad(s, b, h, i, j)

#include <cmath>
#include <cstdint>

#include "core/problem.hpp"

namespace attn::variants {

inline double softcap_apply(double c, double s) { return c > 0.0 ? c * std::tanh(s / c) : s; }
inline double softcap_grad(double c, double s) {
  if (c <= 0.0) return 1.0;
  const double t = std::tanh(s / c);
  return 1.0 - t * t;
}

inline double alibi_term(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  const auto& slopes = p.mask().alibi_slopes;
  if (slopes.empty()) return 0.0;
  return -slopes[static_cast<std::size_t>(h)] * static_cast<double>(std::llabs(i + p.off[b] - j));
}

}  // namespace attn::variants
