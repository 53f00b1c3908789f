#pragma once
/// Activations of the feed-forward layers (docs/nn.md), elementwise with explicit derivatives:
///   relu       max(a, 0)                                  (derivative 0 at a = 0, as torch)
///   gelu       a·Φ(a) = ½·a·erfc(−a/√2)                   (Hendrycks & Gimpel 2016; erfc keeps
///                                                          the negative tail accurate)
///   gelu_tanh  ½·a·(1 + tanh u) = a·σ(2u), u = √(2/π)·(a + 0.044715·a³)   (GPT-2's approximation)
///   silu       a·σ(a)                                     (the gate of SwiGLU)
/// The σ forms never evaluate 1 + tanh u, so large |a| gives no cancellation and no NaN.

#include <cstdint>
#include <string>

namespace attn::nn {

/// FeedForward activations; swiglu is the gated silu(x·W_gᵀ) ∘ (x·W_uᵀ) (Shazeer 2020).
enum class Activation { relu, gelu, gelu_tanh, swiglu };
const char* activation_name(Activation a);
/// "relu", "gelu", "gelu_tanh", "swiglu"; anything else is an attn::Error listing them.
Activation parse_activation(const std::string& name);

/// Elementwise forms (T = float or double); for swiglu these are silu, the gate.
template <class T>
T activation_value(Activation which, T a);
/// d activation / d a at a.
template <class T>
T activation_derivative(Activation which, T a);
template <class T>
T silu(T a);
template <class T>
T silu_derivative(T a);

}  // namespace attn::nn
