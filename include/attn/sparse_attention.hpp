#pragma once
/// Strided sparse attention (Child et al. 2019, "Generating Long Sequences with Sparse
/// Transformers"), optionally with a local window and global tokens (Longformer, Beltagy et al.
/// 2020; BigBird, Zaheer et al. 2020), forward and backward (docs/sparse_attention.md). Exact: one
/// softmax over the union of the visible keys, no key counted twice. Shapes as SDPA's (any strides,
/// GQA/MQA: query head h uses kv head h / (Hq / Hkv)):
///   q [B, Hq, Nq, D]   k [B, Hkv, Nk, D]   v [B, Hkv, Nk, Dv]   out [B, Hq, Nq, Dv]   lse [B, Hq, Nq]
/// Query i sits at position p_i = i + off (off = 0 top_left, Nk − Nq bottom_right) and sees key j iff
///   j < Lk_b  and  (causal ⇒ j ≤ p_i)  and  ( (p_i − j) mod s = 0  or  |p_i − j| ≤ w  or  j < g  or  0 ≤ p_i < g ).
/// Cost ∝ Nq·(w + g + Nk/s), never Nq·Nk: the strided keys of a query form one residue class mod s,
/// and each class is a dense (banded) SDPA on strided views of q, k, v (no copies).

#include <cstdint>
#include <optional>
#include <vector>

#include "attn/sdpa.hpp"
#include "attn/tensor.hpp"

namespace attn {

struct StridedAttentionParams {
  std::int64_t stride = 0;         ///< s ≥ 1 (s = 1: dense attention)
  std::int64_t window = 0;         ///< w ≥ 0: keys with |p_i − j| ≤ w (0 adds nothing: the diagonal is strided)
  std::int64_t global_tokens = 0;  ///< g ≥ 0: keys j < g are seen by every query, queries 0 ≤ p_i < g see every key
  bool causal = false;             ///< only keys j ≤ p_i
  /// No default: a call with Nq != Nk must state where the queries sit (the residue classes and
  /// the window depend on it); with Nq = Nk both agree and it may stay unset.
  std::optional<Alignment> alignment;
  /// Per-batch key lengths (padding on the right: keys j ≥ k_lengths[b] are hidden), size B; empty =
  /// Nk for every row. Not with bottom_right alignment (the query positions would depend on b).
  std::vector<std::int64_t> k_lengths;
  std::optional<double> scale;           ///< default 1/sqrt(D)
  Backend backend = Backend::automatic;  ///< of the SDPA calls (f64 inputs run the reference)
  int num_threads = 0;                   ///< 0 = all; the result does not depend on it
};

/// out (any float dtype of the SDPA API: q's or f32) and lse (optional, lse_dtype(q.dtype); the
/// backward needs it). `outputs.probs` is refused (an N² tensor defeats the point).
void strided_attention_forward(const SdpaOutputs& outputs, const TensorView& q, const TensorView& k,
                               const TensorView& v, const StridedAttentionParams& params);

/// Gradients of strided_attention_forward given dout and the forward's out and lse; `dlse`
/// (optional) is the loss's gradient with respect to lse. `grads.dbias` is refused (no bias).
void strided_attention_backward(const SdpaGrads& grads, const TensorView& dout, const TensorView& q,
                                const TensorView& k, const TensorView& v, const TensorView& out, const TensorView& lse,
                                const StridedAttentionParams& params, const TensorView& dlse = {});

}  // namespace attn
