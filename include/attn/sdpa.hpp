#pragma once
/// Scaled-dot-product attention: softmax(score pipeline(q·kᵀ))·v, forward and backward, with every
/// mask of docs/contract.md §3–§4. Shapes (logical; any strides):
///   q [B, Hq, Nq, D]   k [B, Hkv, Nk, D]   v [B, Hkv, Nk, Dv]
///   out [B, Hq, Nq, Dv]   lse [B, Hq, Nq] (lse_dtype(q.dtype))   probs [B, Hq, Nq, Nk]
/// Head h of q uses kv head h / (Hq / Hkv). Under varlen (cu_seqlens) B is 1 and the sequences are
/// packed along N; each sequence is its own batch row for masks, dropout and callbacks.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "attn/tensor.hpp"

namespace attn {

/// Which implementation runs a call. `automatic` picks the fastest one that can run.
enum class Backend { automatic, reference, cpu, cuda };
const char* backend_name(Backend backend);

/// Where the diagonal of a causal/window mask (and ALiBi's zero distance) sits when a sequence has
/// Lq_b != Lk_b (docs/contract.md §5): top_left: query i is aligned with key i, off_b = 0
/// (PyTorch's is_causal). bottom_right: the last query is aligned with the last key,
/// off_b = Lk_b - Lq_b (FlashAttention, KV-cache decode).
enum class Alignment { top_left, bottom_right };

/// Block-sparse mask: keep bits per (q block, k block), with its own block sizes.
struct BlockMask {
  std::int64_t q_block = 128;  ///< qb
  std::int64_t k_block = 128;  ///< kb
  /// [B or 1, Hq or 1, ceil(Nq/qb), ceil(Nk/kb)], dtype boolean or i8 (non-zero = keep).
  TensorView keep;
};

/// mask_mod(b, h, i, j) -> true when query i may see key j (positions within the sequence).
using MaskMod = std::function<bool(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j)>;

/// score_mod: s -> value(s, b, h, i, j); `grad` is d value / d s (required for backward).
struct ScoreMod {
  std::function<double(double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j)> value;
  std::function<double(double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j)> grad;
  explicit operator bool() const { return static_cast<bool>(value); }
};

/// Everything that decides which keys each query sees and how scores are modified.
struct MaskSpec {
  bool causal = false;               ///< same as window_right = 0
  std::int64_t window_left = -1;     ///< keys further left than this are hidden; -1 = unbounded
  std::int64_t window_right = -1;    ///< keys further right than this are hidden; -1 = unbounded
  /// No default: a causal, windowed or ALiBi call in which some sequence has Lq_b != Lk_b (e.g.
  /// Nq != Nk) must state it, or validation throws naming both choices. When every Lq_b = Lk_b
  /// the two agree and it may stay unset.
  std::optional<Alignment> alignment;

  /// Per-batch lengths (padding on the right); empty = Nq / Nk for every row. Size B.
  std::vector<std::int64_t> q_lengths, k_lengths;
  /// Packed variable-length batch: prefix sums of the sequence lengths (size nseq + 1, starting
  /// at 0, ending at Nq / Nk). q, k, v then have B = 1.
  std::vector<std::int64_t> cu_seqlens_q, cu_seqlens_k;

  /// Boolean mask (boolean or i8; true = attend), broadcast to [B, Hq, Nq, Nk] by PyTorch's rules.
  TensorView bool_mask;
  /// Additive float bias (any float dtype), broadcast to [B, Hq, Nq, Nk]; -inf hides the key.
  TensorView bias;
  /// ALiBi: one slope per query head (size Hq); adds -slope_h * |i + off_b - j|.
  std::vector<double> alibi_slopes;
  /// Softcap c > 0: s -> c * tanh(s / c). 0 = off.
  double softcap = 0.0;
  /// Block-sparse keep bits.
  std::optional<BlockMask> block_mask;
  /// Callback mask and score modifier (slow path; see docs/contract.md §4).
  MaskMod mask_mod;
  ScoreMod score_mod;
};

/// Whether `probs` holds the softmax before or after dropout (MultiheadAttention uses post).
enum class ProbsKind { pre_dropout, post_dropout };

/// Parameters of one SDPA call.
struct SdpaParams {
  std::optional<double> scale;  ///< default 1/sqrt(D); any finite value
  MaskSpec mask;
  double dropout_p = 0.0;       ///< in [0, 1)
  std::uint64_t dropout_seed = 0;
  std::uint64_t dropout_offset = 0;  ///< low 32 bits form the last Philox counter word
  ProbsKind probs_kind = ProbsKind::post_dropout;
  Backend backend = Backend::automatic;
  int num_threads = 0;          ///< 0 = all (the result does not depend on it)
};

/// The dtype of lse (and dlse) for q/k/v of dtype `input`: f64 for f64 inputs, so that fp64
/// gradients stay fp64-exact however large the scores; f32 for f32, bf16 and f16 inputs. Any other
/// lse dtype is an error.
constexpr DType lse_dtype(DType input) { return input == DType::f64 ? DType::f64 : DType::f32; }

/// Forward outputs. `lse` and `probs` are optional (empty views when not wanted).
struct SdpaOutputs {
  TensorView out;    ///< [B, Hq, Nq, Dv], dtype of q or f32
  TensorView lse;    ///< [B, Hq, Nq] of lse_dtype(q.dtype), natural log
  TensorView probs;  ///< [B, Hq, Nq, Nk], any float dtype
};

/// Backward outputs. dbias is optional (needs an additive bias; reduced over broadcast axes).
struct SdpaGrads {
  TensorView dq;     ///< shape of q
  TensorView dk;     ///< shape of k
  TensorView dv;     ///< shape of v
  TensorView dbias;  ///< shape of params.mask.bias
};

/// out = softmax(S)·V (and lse, probs when given). Throws attn::Error on invalid input.
void sdpa_forward(const SdpaOutputs& outputs, const TensorView& q, const TensorView& k,
                  const TensorView& v, const SdpaParams& params);

/// Gradients of sdpa_forward given dout, and the forward's out and lse (lse is required).
/// `dlse` (optional, [B, Hq, Nq], dtype lse_dtype(q.dtype)) is the loss's gradient with respect to the
/// returned lse; it adds dlse_i·P_ij to the score gradient (d lse_i / d s_ij = P_ij).
void sdpa_backward(const SdpaGrads& grads, const TensorView& dout, const TensorView& q, const TensorView& k,
                   const TensorView& v, const TensorView& out, const TensorView& lse, const SdpaParams& params,
                   const TensorView& dlse = {});

/// One backend's verdict on a call.
struct BackendVerdict {
  Backend backend;
  bool can_run = false;
  std::vector<std::string> reasons;  ///< why not (empty when it can run)
};

/// Each backend's verdict for a forward call, in dispatch order (after validation; a call that
/// fails validation throws as sdpa_forward would).
std::vector<BackendVerdict> explain(const SdpaOutputs& outputs, const TensorView& q, const TensorView& k,
                                    const TensorView& v, const SdpaParams& params);
/// The same for a backward call.
std::vector<BackendVerdict> explain(const SdpaGrads& grads, const TensorView& dout, const TensorView& q,
                                    const TensorView& k, const TensorView& v, const TensorView& out,
                                    const TensorView& lse, const SdpaParams& params, const TensorView& dlse = {});
/// Human-readable form: one line per backend.
std::string to_string(const std::vector<BackendVerdict>& verdicts);

/// The library version, "MAJOR.MINOR.PATCH".
const char* version();

}  // namespace attn
