// Activations and their derivatives (include/attn/nn/activation.hpp for the forms):
//   gelu'(a)      = Φ(a) + a·φ(a)
//   gelu_tanh'(a) = σ(2u) + a·2·σ(2u)·σ(−2u)·u'(a),   u'(a) = √(2/π)·(1 + 3·0.044715·a²)
//   silu'(a)      = σ(a) + a·σ(a)·σ(−a)
// σ(z) = 1/(1 + e^−z) overflows to 0 or 1 cleanly; a vanishing σ(z)·σ(−z) drops its term so that
// a huge |a| (u' = inf) gives the limit, not inf·0 = NaN. The bodies are in activation_impl.hpp.

#include "attn/nn/activation.hpp"

#include "attn/error.hpp"
#include "nn/activation_impl.hpp"

namespace attn::nn {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::swiglu: return "swiglu";
  }
  return "?";
}

Activation parse_activation(const std::string& name) {
  for (Activation a : {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::swiglu})
    if (name == activation_name(a)) return a;
  throw Error(ErrorKind::value, "activation",
              ::attn::detail::concat("\"", name, "\", expected one of relu, gelu, gelu_tanh, swiglu"));
}

template <class T>
T activation_value(Activation which, T a) {
  T r = a;
  detail::visit_activation(which, [&](auto k) { r = detail::act_value<decltype(k)::value>(a); });
  return r;
}

template <class T>
T activation_derivative(Activation which, T a) {
  T r = a;
  detail::visit_activation(which, [&](auto k) { r = detail::act_grad<decltype(k)::value>(a); });
  return r;
}

template <class T>
T silu(T a) {
  return detail::silu_value(a);
}

template <class T>
T silu_derivative(T a) {
  return detail::silu_grad(a);
}

template float activation_value<float>(Activation, float);
template double activation_value<double>(Activation, double);
template float activation_derivative<float>(Activation, float);
template double activation_derivative<double>(Activation, double);
template float silu<float>(float);
template double silu<double>(double);
template float silu_derivative<float>(float);
template double silu_derivative<double>(double);

}  // namespace attn::nn
