#pragma once
// The row passes of activation_rows.hpp over element traits V (W lanes of V::T; load, store on
// top of activation_formulas.hpp's operations). A tail of fewer than W elements is copied into a
// zero-padded W-element buffer and run as one more vector. Included by activation_rows.cpp
// (scalar) and inside the target regions of activation_avx512.cpp / activation_avx2.cpp.

#include <cstdint>

#include "attn/nn/activation.hpp"
#include "nn/activation_formulas.hpp"
#include "nn/activation_rows.hpp"

namespace attn::nn::detail {

template <class V>
struct EltRows {
  using T = typename V::T;
  using R = typename V::R;
  using F = ActFormulas<V>;
  static constexpr int W = V::W;

  // Runs body(i, k) over vectors at i (k = W lanes) and the padded tail (k < W).
  template <int Nin, int Nout, class Body>
  static void each(const T* const (&in)[Nin], T* const (&out)[Nout], std::int64_t n, Body&& body) {
    std::int64_t i = 0;
    for (; i + W <= n; i += W) {
      R x[Nin], y[Nout];
      for (int j = 0; j < Nin; ++j) x[j] = V::load(in[j] + i);
      body(x, y);
      for (int j = 0; j < Nout; ++j) V::store(out[j] + i, y[j]);
    }
    if (i == n) return;
    const std::int64_t k = n - i;
    T buf[Nin > Nout ? Nin : Nout][W];
    R x[Nin], y[Nout];
    for (int j = 0; j < Nin; ++j) {
      for (int l = 0; l < W; ++l) buf[j][l] = l < k ? in[j][i + l] : T(0);
      x[j] = V::load(buf[j]);
    }
    body(x, y);
    for (int j = 0; j < Nout; ++j) {
      V::store(buf[j], y[j]);
      for (std::int64_t l = 0; l < k; ++l) out[j][i + l] = buf[j][l];
    }
  }

  template <Activation A>
  static void forward(const T* a, T* h, std::int64_t n) {
    each<1, 1>({a}, {h}, n, [](const R* x, R* y) { y[0] = F::template value<A>(x[0]); });
  }
  template <Activation A>
  static void backward(const T* a, const T* dh, T* da, std::int64_t n) {
    each<2, 1>({a, dh}, {da}, n, [](const R* x, R* y) { y[0] = V::mul(x[1], F::template grad<A>(x[0])); });
  }
  static void swiglu_forward(const T* g, const T* u, T* h, std::int64_t n) {
    each<2, 1>({g, u}, {h}, n, [](const R* x, R* y) { y[0] = V::mul(F::silu(x[0]), x[1]); });
  }
  static void swiglu_backward(const T* g, const T* u, const T* dh, T* dg, T* du, std::int64_t n) {
    each<3, 2>({g, u, dh}, {dg, du}, n, [](const R* x, R* y) {
      y[0] = V::mul(V::mul(x[2], x[1]), F::silu_grad(x[0]));
      y[1] = V::mul(x[2], F::silu(x[0]));
    });
  }

  static constexpr EltKernels<T> kernels() {
    return {{&forward<Activation::relu>, &forward<Activation::gelu>, &forward<Activation::gelu_tanh>,
             &forward<Activation::swiglu>},
            {&backward<Activation::relu>, &backward<Activation::gelu>, &backward<Activation::gelu_tanh>,
             &backward<Activation::swiglu>},
            &swiglu_forward,
            &swiglu_backward};
  }
};

}  // namespace attn::nn::detail
