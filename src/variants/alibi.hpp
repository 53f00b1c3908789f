#pragma once
// ALiBi (Press et al., "Train Short, Test Long", 2022), aligned like the window (docs/contract.md):
//   s -> s − slope_h·|i + off_b − j|     d/ds = 1
// term() is the fp32 form decode shares (its diagonal is i + len_b − Nq).

#include <cstdint>
#include <cstdlib>

#include "core/problem.hpp"
#include "variants/variant.hpp"

namespace attn::variants {

struct AlibiTerm {
  static constexpr Kind kKind = Kind::additive;
  static bool active(const core::SdpaProblem& p) { return !p.mask().alibi_slopes.empty(); }
  /// The fp32 term −slope·|diag − j| (slope ≥ 0 as given, diag the key on the row's diagonal).
  static float term(float slope, std::int64_t diag, std::int64_t j) {
    return -slope * static_cast<float>(diag > j ? diag - j : j - diag);
  }
  static double apply(const core::SdpaProblem& p, double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    const auto& slopes = p.mask().alibi_slopes;
    if (slopes.empty()) return s;
    return s - slopes[static_cast<std::size_t>(h)] * static_cast<double>(std::llabs(i + p.off[b] - j));
  }
  static void row(const ScoreRow& r, std::int64_t lo, std::int64_t hi, float* add) {
    const float slope = static_cast<float>(r.p.mask().alibi_slopes[static_cast<std::size_t>(r.h)]);
    const std::int64_t diag = r.i + r.p.off[r.b] - r.j0;  // |i + off_b − j| = |diag − c|
    for (std::int64_t c = lo; c < hi; ++c) add[c] += term(slope, diag, c);
  }
  static TileClass classify(const core::SdpaProblem& p, const Tile&) { return per_element(active(p)); }
};

}  // namespace attn::variants
