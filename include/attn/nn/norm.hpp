#pragma once
/// nn::LayerNorm and nn::RMSNorm over the last axis of row-major [M, C] rows (docs/nn.md):
///   LayerNorm  y = (x − mean)·rstd·γ + β,  rstd = 1/√(var + eps), var the biased variance (as torch)
///   RMSNorm    y = x·rstd·γ,               rstd = 1/√(mean(x²) + eps)   (Zhang & Sennrich 2019)
/// Row statistics are accumulated in fp64 (two passes for the variance, so a large common offset
/// does not cancel). Forward keeps mean and rstd per row; backward needs the forward's x again.
///   LayerNorm backward: x̂ = (x − mean)·rstd, g = dy·γ,  dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),
///                       dγ += Σ_rows dy·x̂, dβ += Σ_rows dy
///   RMSNorm backward:   x̂ = x·rstd, g = dy·γ,  dx = rstd·(g − x̂·mean(g·x̂)),  dγ += Σ_rows dy·x̂
/// Parameters: "weight" [C] (γ, ones) and, for LayerNorm with bias, "bias" [C] (β, zeros).

#include <cstdint>
#include <vector>

#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

/// T = float or double (the f64 module exists for finite-difference checks).
template <class T>
class LayerNorm : public Module {
 public:
  /// Throws attn::Error for dim < 1 or eps ≤ 0 (or not finite).
  explicit LayerNorm(std::int64_t dim, double eps = 1e-5, bool bias = true);
  std::int64_t dim() const { return C_; }
  double eps() const { return eps_; }
  /// y [M, C] = LayerNorm(x [M, C]) (row-major, row strides C); keeps mean and rstd per row.
  void forward(const T* x, std::int64_t M, T* y);
  /// dx [M, C] (null = not wanted; += when accumulate) from dy and the forward's x; adds dγ, dβ.
  void backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate = false);
  std::vector<Parameter> parameters() const override;

 private:
  std::int64_t C_ = 0;
  double eps_ = 0;
  Tensor storage_;  // γ, β, dγ, dβ
  T *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
  std::vector<double> mean_, rstd_;
};

template <class T>
class RMSNorm : public Module {
 public:
  /// Throws attn::Error for dim < 1 or eps ≤ 0 (or not finite).
  explicit RMSNorm(std::int64_t dim, double eps = 1e-6);
  std::int64_t dim() const { return C_; }
  double eps() const { return eps_; }
  /// y [M, C] = RMSNorm(x [M, C]); keeps rstd per row.
  void forward(const T* x, std::int64_t M, T* y);
  /// dx [M, C] (null = not wanted; += when accumulate) from dy and the forward's x; adds dγ.
  void backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate = false);
  std::vector<Parameter> parameters() const override;

 private:
  std::int64_t C_ = 0;
  double eps_ = 0;
  Tensor storage_;  // γ, dγ
  T *w_ = nullptr, *dw_ = nullptr;
  std::vector<double> rstd_;
};

/// Which normalisation a layer uses.
enum class NormKind { layer_norm, rms_norm };
const char* norm_kind_name(NormKind kind);

/// A LayerNorm or an RMSNorm chosen at run time, with the interface of both.
template <class T>
class Norm : public Module {
 public:
  Norm(NormKind kind, std::int64_t dim, double eps, bool bias = true);
  NormKind kind() const { return kind_; }
  void forward(const T* x, std::int64_t M, T* y);
  void backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate = false);
  std::vector<Parameter> parameters() const override;

 private:
  NormKind kind_;
  std::vector<LayerNorm<T>> ln_;  // exactly one of the two holds the module
  std::vector<RMSNorm<T>> rms_;
};

extern template class LayerNorm<float>;
extern template class LayerNorm<double>;
extern template class RMSNorm<float>;
extern template class RMSNorm<double>;
extern template class Norm<float>;
extern template class Norm<double>;

}  // namespace attn::nn
