#pragma once
// SdpaProblem: one validated SDPA call, resolved into the sizes and per-sequence facts every
// backend needs (lengths, alignment offsets, broadcast strides of masks). Built only by
// validate_forward / validate_backward (validate.cpp), so a backend never sees an invalid call.

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "attn/sdpa.hpp"

namespace attn::core {

/// A mask/bias view broadcast to [Bt, Hq, Nq, Nk] (Bt = tensor batch): strides are 0 on broadcast axes.
struct Broadcast4 {
  TensorView view;                              // the caller's view (undefined when absent)
  std::array<std::int64_t, 4> strides{};        // element strides over [Bt, Hq, Nq, Nk]
  bool defined() const { return view.defined(); }
  std::int64_t offset(std::int64_t tb, std::int64_t h, std::int64_t row, std::int64_t col) const {
    return tb * strides[0] + h * strides[1] + row * strides[2] + col * strides[3];
  }
};

struct SdpaProblem {
  // Sizes (docs/contract.md §1). B is the number of logical batch rows (sequences under varlen).
  std::int64_t B = 0, Hq = 0, Hkv = 0, G = 1, Nq = 0, Nk = 0, D = 0, Dv = 0;
  double scale = 1.0;
  bool varlen = false;

  // Per logical batch row b: lengths, where its rows start on the tensors' N axes, which tensor
  // batch it lives in, and the alignment offset off_b of docs/contract.md §5.
  std::vector<std::int64_t> Lq, Lk, q_start, k_start, tensor_b, off;

  // Visibility window with causal folded in (-1 = unbounded side).
  std::int64_t window_left = -1, window_right = -1;

  TensorView q, k, v;
  Broadcast4 bool_mask, bias;
  const SdpaParams* params = nullptr;  // masks' callbacks, block mask, alibi, softcap, dropout

  // Dropout: keep iff Philox word >= threshold (docs/contract.md §7).
  double dropout_p = 0.0;
  std::uint32_t dropout_threshold = 0;

  const MaskSpec& mask() const { return params->mask; }
  bool has_dropout() const { return dropout_p > 0.0; }
  /// Rows of the dense masks (bias, bool) are indexed by tensor position: q_start[b] + i.
  std::int64_t tensor_row(std::int64_t b, std::int64_t i) const { return q_start[b] + i; }
  std::int64_t tensor_col(std::int64_t b, std::int64_t j) const { return k_start[b] + j; }
};

/// Validates a forward call and resolves it. Throws attn::Error naming the argument.
/// `lse_as` is the dtype the lse slot must have, lse_dtype(q.dtype) unless given: linear attention
/// passes its den there (always f32, an output the fp64 reference recomputes rather than reads).
SdpaProblem validate_forward(const SdpaOutputs& outputs, const TensorView& q, const TensorView& k,
                             const TensorView& v, const SdpaParams& params, std::optional<DType> lse_as = {});
/// Validates a backward call (the forward's checks plus dout, out, lse, dlse and the gradients).
SdpaProblem validate_backward(const SdpaGrads& grads, const TensorView& dout, const TensorView& q, const TensorView& k,
                              const TensorView& v, const TensorView& out, const TensorView& lse,
                              const SdpaParams& params, const TensorView& dlse = {}, std::optional<DType> lse_as = {});

}  // namespace attn::core
