#pragma once
/// nn::Linear: y = x·Wᵀ + b with W [out, in] as torch stores it, b [out] optional. The GEMMs run
/// on OpenBLAS (sgemm for float, dgemm for double). Backward: dx = dy·W, dW += dyᵀ·x, db += Σ_rows dy.
/// Under MatmulPrecision::bf16 the float GEMMs take bf16 operands; W's bf16 copy is kept between
/// calls while a WeightCacheGuard is alive (attn/nn/weight_cache.hpp, docs/nn.md).

#include <cstdint>
#include <memory>

#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

class Bf16WeightCopy;  // a module's kept bf16 weights (src/nn/bf16_weights.hpp, internal)

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
  /// The same, given x's bf16 rounding x16 [M, in] (row-major, packed): under bf16 matmuls a module
  /// that keeps x16 for its backward rounds x once (x16 is ignored otherwise; null = round x).
  void forward(const T* x, std::int64_t M, std::int64_t ldx, T* y, std::int64_t ldy, const std::uint16_t* x16) const;
  /// dx [M, in] (row stride lddx; null = not wanted) = dy·W (+= when accumulate_dx);
  /// dW += dyᵀ·x; db += Σ_rows dy.
  void backward(const T* x, std::int64_t ldx, const T* dy, std::int64_t ldy, std::int64_t M, T* dx, std::int64_t lddx,
                bool accumulate_dx = false);
  /// The same, given x's bf16 rounding x16 [M, in] (row stride ldx16): under bf16 matmuls a module
  /// whose input feeds several Linears rounds it once (x16 is ignored otherwise; null = round x).
  void backward(const T* x, std::int64_t ldx, const T* dy, std::int64_t ldy, std::int64_t M, T* dx, std::int64_t lddx,
                bool accumulate_dx, const std::uint16_t* x16, std::int64_t ldx16);

  std::vector<Parameter> parameters() const override;

  /// bf16 matmuls: cut W's kept bf16 copy out of the copy of the n weights at `base` (a parameter
  /// block holding this W, shared by the Linears of one module), or out of `other`'s block.
  void share_bf16_weights(std::shared_ptr<Bf16WeightCopy> copy, const T* base, std::int64_t n);
  void share_bf16_weights(const Linear& other);

 private:
  std::int64_t in_ = 0, out_ = 0;
  Tensor storage_;  // [2 · (out·in + out)] when owned: w, b, dw, db
  T *w_ = nullptr, *dw_ = nullptr, *b_ = nullptr, *db_ = nullptr;
  // The kept bf16 copy that W is cut from (float only): it rounds the w16_n_ weights at w16_base_.
  std::shared_ptr<Bf16WeightCopy> w16_;
  const T* w16_base_ = nullptr;
  std::int64_t w16_n_ = 0;
  // W in bf16 for one GEMM: the kept copy under a WeightCacheGuard, else rounded now into `slot`.
  const std::uint16_t* bf16_weight(int slot) const;
  // C [M, N] = A16·op(W) (+ bias) + beta·C (op = ᵀ when trans_b: the forward; else dx = dy·W) with
  // W from the kept copy packed into oneDNN's layout; false (nothing done) when there is no such copy.
  bool gemm_packed_weight(bool trans_b, std::int64_t M, const std::uint16_t* A16, std::int64_t lda, float beta,
                          float* C, std::int64_t ldc, const float* bias = nullptr) const;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace attn::nn
