#pragma once
// Softcap (Gemma 2): a transform of the scaled score, with its derivative for the backward:
//   s -> c·tanh(s/c)     d/ds = 1 − tanh²(s/c)      (c = 0: off)

#include <cmath>

#include "core/problem.hpp"
#include "variants/variant.hpp"

namespace attn::variants {

struct Softcap {
  static constexpr Kind kKind = Kind::transform;
  static bool active(const core::SdpaProblem& p) { return p.mask().softcap > 0.0; }
  static double value(double c, double s) { return c > 0.0 ? c * std::tanh(s / c) : s; }
  static double grad(double c, double s) {
    if (c <= 0.0) return 1.0;
    const double t = std::tanh(s / c);
    return 1.0 - t * t;
  }
  static double apply(const core::SdpaProblem& p, double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) {
    return value(p.mask().softcap, s);
  }
  /// fp32 form on the scaled score x (c > 0): the value, and tanh(x/c) for the derivative 1 − t².
  static float value_f32(float c, float x, float* t) {
    *t = std::tanh(x / c);
    return c * *t;
  }
  static TileClass classify(const core::SdpaProblem& p, const Tile&) { return per_element(active(p)); }
};

// The names the reference backward uses.
inline double softcap_apply(double c, double s) { return Softcap::value(c, s); }
inline double softcap_grad(double c, double s) { return Softcap::grad(c, s); }

}  // namespace attn::variants
