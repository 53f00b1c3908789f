#pragma once
// The activations' scalar forms, inline so that FeedForward's loops compile them per kind
// (formulas and derivatives in include/attn/nn/activation.hpp and src/nn/activation.cpp).

#include <cmath>
#include <numbers>
#include <type_traits>

#include "attn/nn/activation.hpp"

namespace attn::nn::detail {

inline constexpr double kTanhCubic = 0.044715;  // GPT-2's cubic coefficient

template <class T>
inline T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

template <class T>
inline T silu_value(T a) {
  return a * sigmoid(a);
}
template <class T>
inline T silu_grad(T a) {
  const T s = sigmoid(a), t = s * sigmoid(-a);
  return t == T(0) ? s : s + a * t;
}

template <Activation A, class T>
inline T act_value(T a) {
  constexpr T k = static_cast<T>(std::numbers::sqrt2 / 2);  // 1/√2
  if constexpr (A == Activation::relu) {
    return a > T(0) ? a : T(0);
  } else if constexpr (A == Activation::gelu) {
    return T(0.5) * a * std::erfc(-a * k);
  } else if constexpr (A == Activation::gelu_tanh) {
    const T u =
        static_cast<T>(std::numbers::sqrt2 * std::numbers::inv_sqrtpi) * (a + static_cast<T>(kTanhCubic) * a * a * a);
    return a * sigmoid(T(2) * u);
  } else {
    return silu_value(a);
  }
}

template <Activation A, class T>
inline T act_grad(T a) {
  constexpr T k = static_cast<T>(std::numbers::sqrt2 / 2);                         // 1/√2
  constexpr T c = static_cast<T>(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);  // √(2/π)
  if constexpr (A == Activation::relu) {
    return a > T(0) ? T(1) : T(0);
  } else if constexpr (A == Activation::gelu) {
    const T cdf = T(0.5) * std::erfc(-a * k);
    const T pdf = std::exp(T(-0.5) * a * a) * static_cast<T>(std::numbers::inv_sqrtpi) * k;
    return cdf + a * pdf;
  } else if constexpr (A == Activation::gelu_tanh) {
    const T u = c * (a + static_cast<T>(kTanhCubic) * a * a * a);
    const T s = sigmoid(T(2) * u), t = s * sigmoid(T(-2) * u);
    if (t == T(0)) return s;
    return s + a * T(2) * t * c * (T(1) + T(3) * static_cast<T>(kTanhCubic) * a * a);
  } else {
    return silu_grad(a);
  }
}

/// Calls fn(std::integral_constant<Activation, A>{}) for the run-time kind.
template <class Fn>
inline void visit_activation(Activation a, Fn&& fn) {
  switch (a) {
    case Activation::relu: fn(std::integral_constant<Activation, Activation::relu>{}); break;
    case Activation::gelu: fn(std::integral_constant<Activation, Activation::gelu>{}); break;
    case Activation::gelu_tanh: fn(std::integral_constant<Activation, Activation::gelu_tanh>{}); break;
    case Activation::swiglu: fn(std::integral_constant<Activation, Activation::swiglu>{}); break;
  }
}

}  // namespace attn::nn::detail
