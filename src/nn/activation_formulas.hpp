#pragma once
// The activations' formulas, written once over an element traits V (activation_impl.hpp's scalar
// float/double, activation_avx512.cpp's and activation_avx2.cpp's vectors), so the scalar forms
// and the vector row passes (activation_rows.hpp) are one implementation. Forms and derivatives
// in include/attn/nn/activation.hpp and src/nn/activation.cpp. V gives: R (a value or a
// register), set(double), add, sub, mul, div, erfc, exp, if_zero(c, y, x) = c == 0 ? y : x and
// if_pos(a, y, x) = a > 0 ? y : x (elementwise; NaN compares false).
//
// Limits: a term that vanishes is dropped rather than multiplied by a huge or infinite a, so
// ±inf gives the limit (gelu(−inf) = 0, gelu'(+inf) = 1), never inf·0 = NaN; NaN stays NaN
// (relu's derivative is 0 there, as torch's).
//
// No <cmath> here and no non-template inline function: a per-ISA file includes this header
// inside its target region (src/cpu/isa/isa_begin.hpp), and only its own instantiations get the
// ISA's instructions.

#include <numbers>

#include "attn/nn/activation.hpp"

namespace attn::nn::detail {

inline constexpr double kTanhCubic = 0.044715;  // GPT-2's cubic coefficient

template <class V>
struct ActFormulas {
  using R = typename V::R;

  // σ(z) from e = exp(−|z|) ≤ 1: 1/(1 + e) for z > 0, e/(1 + e) otherwise — no overflow of exp,
  // so σ of a very negative z is its tiny value (down to the subnormals), not 1/inf.
  static R sigmoid(R z) {
    const R e = V::exp(V::if_pos(z, V::sub(V::set(0), z), z));
    const R r = V::div(V::set(1), V::add(V::set(1), e));
    return V::if_pos(z, r, V::mul(e, r));
  }

  static R silu(R a) {
    const R s = sigmoid(a);
    return V::if_zero(s, V::set(0), V::mul(a, s));
  }
  static R silu_grad(R a) {
    const R s = sigmoid(a), t = V::mul(s, sigmoid(V::sub(V::set(0), a)));
    return V::if_zero(t, s, V::add(s, V::mul(a, t)));
  }

  template <Activation A>
  static R value(R a) {
    if constexpr (A == Activation::relu) {
      return V::if_pos(V::sub(V::set(0), a), V::set(0), a);  // a < 0 ? 0 : a, so NaN stays NaN
    } else if constexpr (A == Activation::gelu) {
      // ½·a·erfc(−a/√2); erfc underflows to 0 for a below about −14 (fp32) or −38 (fp64).
      const R e = V::erfc(V::mul(a, V::set(-std::numbers::sqrt2 / 2)));
      return V::if_zero(e, V::set(0), V::mul(V::mul(V::set(0.5), a), e));
    } else if constexpr (A == Activation::gelu_tanh) {
      const R s = sigmoid(V::mul(V::set(2), tanh_arg(a)));
      return V::if_zero(s, V::set(0), V::mul(a, s));
    } else {
      return silu(a);
    }
  }

  template <Activation A>
  static R grad(R a) {
    if constexpr (A == Activation::relu) {
      return V::if_pos(a, V::set(1), V::set(0));
    } else if constexpr (A == Activation::gelu) {
      // Φ(a) + a·φ(a); φ(a) = 0 drops its term.
      const R cdf = V::mul(V::set(0.5), V::erfc(V::mul(a, V::set(-std::numbers::sqrt2 / 2))));
      const R pdf = V::mul(V::exp(V::mul(V::set(-0.5), V::mul(a, a))),
                           V::set(std::numbers::inv_sqrtpi * std::numbers::sqrt2 / 2));
      return V::if_zero(pdf, cdf, V::add(cdf, V::mul(a, pdf)));
    } else if constexpr (A == Activation::gelu_tanh) {
      // σ(2u) + a·2·σ(2u)·σ(−2u)·u'(a), u'(a) = √(2/π)·(1 + 3·0.044715·a²).
      const R two_u = V::mul(V::set(2), tanh_arg(a));
      const R s = sigmoid(two_u), t = V::mul(s, sigmoid(V::sub(V::set(0), two_u)));
      const R du = V::mul(V::set(kSqrt2OverPi), V::add(V::set(1), V::mul(V::mul(V::set(3 * kTanhCubic), a), a)));
      return V::if_zero(t, s, V::add(s, V::mul(V::mul(V::mul(a, V::set(2)), t), du)));
    } else {
      return silu_grad(a);
    }
  }

 private:
  static constexpr double kSqrt2OverPi = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;
  // u = √(2/π)·(a + 0.044715·a³)
  static R tanh_arg(R a) {
    return V::mul(V::set(kSqrt2OverPi), V::add(a, V::mul(V::mul(V::mul(V::set(kTanhCubic), a), a), a)));
  }
};

}  // namespace attn::nn::detail
