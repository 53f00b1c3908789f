#pragma once
// The activations' scalar forms (float and double): activation_formulas.hpp over the scalar
// traits below, inline so that callers compile them per kind (formulas and derivatives in
// include/attn/nn/activation.hpp and src/nn/activation.cpp). The vector row passes over the same
// formulas are in activation_rows.hpp.

#include <cmath>
#include <type_traits>

#include "attn/nn/activation.hpp"
#include "nn/activation_formulas.hpp"

namespace attn::nn::detail {

/// Element traits of activation_formulas.hpp for one float or double.
template <class E>
struct ScalarElt {
  using T = E;
  using R = E;
  static constexpr int W = 1;
  static R load(const E* p) { return *p; }
  static void store(E* p, R x) { *p = x; }
  static R set(double x) { return static_cast<E>(x); }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R erfc(R a) { return std::erfc(a); }
  static R exp(R a) { return std::exp(a); }
  static R if_zero(R c, R y, R x) { return c == E(0) ? y : x; }
  static R if_pos(R a, R y, R x) { return a > E(0) ? y : x; }
};

template <class T>
inline T sigmoid(T z) {
  return ActFormulas<ScalarElt<T>>::sigmoid(z);
}
template <class T>
inline T silu_value(T a) {
  return ActFormulas<ScalarElt<T>>::silu(a);
}
template <class T>
inline T silu_grad(T a) {
  return ActFormulas<ScalarElt<T>>::silu_grad(a);
}
template <Activation A, class T>
inline T act_value(T a) {
  return ActFormulas<ScalarElt<T>>::template value<A>(a);
}
template <Activation A, class T>
inline T act_grad(T a) {
  return ActFormulas<ScalarElt<T>>::template grad<A>(a);
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
