#pragma once
/// nn::Linear: y = x·Wᵀ + b with W [out, in] as torch stores it, b [out] optional. The GEMMs run
/// on OpenBLAS (sgemm for float, dgemm for double). Backward: dx = dy·W, dW += dyᵀ·x, db += Σ_rows dy.

#include <cstdint>
#include <memory>

#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

/// T = float (f32) or double (f64).
template <class T>
class Linear : public Module {
 public:
  /// Owns W [out_features, in_features] (U(-1/√in, 1/√in) from `seed`, as torch initialises
  /// Linear) and b [out_features] (zero) when `bias`; gradients start at zero.
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true, std::uint64_t seed = 0);
  /// Uses storage owned by a parent module: w/dw [out, in], b/db [out] (null when no bias).
  Linear(std::int64_t in_features, std::int64_t out_features, T* w, T* dw, T* b, T* db);

  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  bool has_bias() const { return b_ != nullptr; }
  T* weight() const { return w_; }
  T* weight_grad() const { return dw_; }
  T* bias() const { return b_; }
  T* bias_grad() const { return db_; }

  /// x [..., in] (rank 1-3, dtype T, any strides) -> y [..., out] (row-major).
  Tensor forward(const TensorView& x) const;
  /// Given x of the forward and dy [..., out]: returns dx [..., in]; adds dW and db.
  Tensor backward(const TensorView& x, const TensorView& dy);

  /// Row-major pointer form: x [M, in] with row stride ldx -> y [M, out] with row stride ldy.
  void forward(const T* x, std::int64_t M, std::int64_t ldx, T* y, std::int64_t ldy) const;
  /// dx [M, in] (row stride lddx; null = not wanted) = dy·W (+= when accumulate_dx);
  /// dW += dyᵀ·x; db += Σ_rows dy.
  void backward(const T* x, std::int64_t ldx, const T* dy, std::int64_t ldy, std::int64_t M, T* dx, std::int64_t lddx,
                bool accumulate_dx = false);

  std::vector<Parameter> parameters() const override;

 private:
  std::int64_t in_ = 0, out_ = 0;
  Tensor storage_;  // [2 · (out·in + out)] when owned: w, b, dw, db
  T *w_ = nullptr, *dw_ = nullptr, *b_ = nullptr, *db_ = nullptr;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace attn::nn
