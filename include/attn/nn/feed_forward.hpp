#pragma once
/// nn::FeedForward (docs/nn.md), the position-wise MLP of a transformer layer, on row-major [M, E]:
///   relu, gelu, gelu_tanh:  y = act(x·W₁ᵀ + b₁)·W₂ᵀ + b₂                 W₁ [F, E], W₂ [E, F]
///   swiglu:                 y = (silu(x·W_gᵀ + b_g) ∘ (x·W_uᵀ + b_u))·W_dᵀ + b_d
/// W_g and W_u are stored as one [2F, E] matrix, so their projections are one GEMM. Forward keeps
/// the pre-activation a [M, F or 2F] and h = act(a) [M, F]; backward (llm.c style):
///   dh = dy·W₂,  dW₂ += dyᵀ·h,  da = act'(a) ∘ dh  (swiglu: dg = dh∘u∘silu'(g), du = dh∘silu(g)),
///   dx = da·W₁,  dW₁ += daᵀ·x.
/// Parameter names: linear1.*, linear2.* (torch's TransformerEncoderLayer) or, for swiglu,
/// gate_proj.*, up_proj.*, down_proj.* (Hugging Face LLaMA). Weights U(±1/√fan_in) as torch's
/// Linear, biases zero.

#include <cstdint>
#include <vector>

#include "attn/nn/activation.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

struct FfnConfig {
  std::int64_t dim = 0;     ///< E
  std::int64_t hidden = 0;  ///< F
  Activation activation = Activation::gelu;
  bool bias = true;
  std::uint64_t seed = 0;
};

template <class T>
class FeedForward : public Module {
 public:
  /// Throws attn::Error for dim or hidden < 1.
  explicit FeedForward(const FfnConfig& config);
  FeedForward(FeedForward&&) noexcept = default;
  const FfnConfig& config() const { return config_; }
  bool gated() const { return config_.activation == Activation::swiglu; }

  /// y [M, E] = FFN(x [M, E]) (row-major); keeps a and h for backward (x must stay alive).
  void forward(const T* x, std::int64_t M, T* y);
  /// dx [M, E] (null = not wanted; += when accumulate) from dy [M, E] and the forward's x; adds
  /// every parameter's gradient.
  void backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate = false);

  /// Frees the kept activations (gradient checkpointing recomputes them); backward then needs a
  /// new forward.
  void release_saved() {
    a_ = Tensor();
    h_ = Tensor();
    dh_ = Tensor();
    da_ = Tensor();
    M_ = -1;
  }

  std::vector<Parameter> parameters() const override;

 private:
  FfnConfig config_;
  Tensor storage_;  // W₁ (gated: [W_g; W_u]), W₂, b₁, b₂, then their gradients
  Linear<T> fc1_, fc2_;
  Tensor a_, h_;  // [M, F or 2F], [M, F]
  Tensor dh_, da_;  // backward scratch, kept between steps: [M, F]; gated: [M, 2F] (else da is dh)
  std::int64_t M_ = -1;
};

extern template class FeedForward<float>;
extern template class FeedForward<double>;

}  // namespace attn::nn
