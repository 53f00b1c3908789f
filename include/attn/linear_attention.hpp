#pragma once
/// Linear ("fast") attention, forward and backward (docs/linear_attention.md):
///   out_i = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + eps),   S = Σ_j φ(k_j) v_jᵀ,   z = Σ_j φ(k_j)
/// over the keys j that query i sees (all of them, or j ≤ i + off when causal). Shapes as SDPA's
/// (any strides, GQA/MQA: query head h uses kv head h / (Hq / Hkv)):
///   q [B, Hq, Nq, D]   k [B, Hkv, Nk, D]   v [B, Hkv, Nk, Dv]   out [B, Hq, Nq, Dv]   den [B, Hq, Nq]
/// Feature maps φ: elu(x) + 1 (Katharopoulos et al. 2020, F = D features) and FAVOR+ positive
/// random features (Choromanski et al. 2021, F = m features):
///   φ(x)_l = exp(ω_lᵀx' − ‖x'‖²/2) / √m,   x' = x / D^¼,   E[φ(q)ᵀφ(k)] = exp(qᵀk / √D)
/// with ω [m, D] a fixed (not learned) projection drawn by favor_projection. Compute is fp32 with
/// fp32 accumulation for f32/bf16/f16 inputs (fp64 in the reference); memory is O(N).

#include <cstdint>

#include "attn/sdpa.hpp"
#include "attn/tensor.hpp"

namespace attn {

enum class FeatureMap { elu, favor };
const char* feature_map_name(FeatureMap map);

struct LinearAttentionParams {
  FeatureMap feature_map = FeatureMap::elu;
  /// FAVOR+ only: ω [m, D], any float dtype (favor_projection draws one). Redraw = a new ω.
  TensorView projection;
  double eps = 1e-6;  ///< added to every denominator; > 0 and finite
  /// Only what the linear form can express: `causal` (with `alignment`, as SDPA's: bottom_right
  /// gives query i the keys j ≤ i + Lk_b − Nq) and `k_lengths` (keys beyond drop out of the sums).
  /// Any other field (bool/float masks, windows, ALiBi, softcap, block masks, callbacks, q_lengths,
  /// cu_seqlens) is refused with an attn::Error pointing to attn::sdpa_forward.
  MaskSpec mask;
  /// [B, Nk] bool or i8, true = padding (torch's key_padding_mask): padded keys drop out of S and z.
  TensorView key_padding_mask;
  /// automatic: the cpu path for f32/bf16/f16 inputs, the fp64 reference (O(N²)) for f64 inputs.
  Backend backend = Backend::automatic;
  int num_threads = 0;     ///< 0 = all; the result does not depend on it
  std::int64_t chunk = 0;  ///< causal chunk length of the cpu backend; 0 = default
};

/// Forward outputs: out (any float dtype) and the denominators den_i = φ(q_i)ᵀz + eps (f32,
/// optional; the backward needs them).
struct LinearAttentionOutputs {
  TensorView out;  ///< [B, Hq, Nq, Dv]
  TensorView den;  ///< [B, Hq, Nq] f32
};

struct LinearAttentionGrads {
  TensorView dq;  ///< shape of q (any float dtype)
  TensorView dk;  ///< shape of k
  TensorView dv;  ///< shape of v
};

/// Recurrent state of causal linear attention: the sums over the keys seen so far, per kv head.
///   S [B, Hkv, F, Dv] f32,   z [B, Hkv, F] f32   (F = linear_attention_features(params, D))
struct LinearAttentionState {
  TensorView S;
  TensorView z;
};

/// Number of features F of the map: D for elu, m = projection.shape[0] for FAVOR+.
std::int64_t linear_attention_features(const LinearAttentionParams& params, std::int64_t D);

/// Fills omega [m, D] (f32 or f64) with FAVOR+ orthogonal random features: blocks of D rows from
/// the Gram–Schmidt orthonormalisation of a Gaussian matrix, each row scaled by the norm of an
/// independent Gaussian vector of dimension D (so rows are marginally N(0, I_D)). Deterministic
/// in `seed` on every platform (Philox4x32-10 + Box–Muller).
void favor_projection(const TensorView& omega, std::uint64_t seed);

/// out = linear attention of (q, k, v). Throws attn::Error on invalid input or on a mask the
/// linear form cannot express.
void linear_attention_forward(const LinearAttentionOutputs& outputs, const TensorView& q, const TensorView& k,
                              const TensorView& v, const LinearAttentionParams& params);

/// Gradients of linear_attention_forward given dout and the forward's out and den. For FAVOR+
/// the projection is a constant (no gradient).
void linear_attention_backward(const LinearAttentionGrads& grads, const TensorView& dout, const TensorView& q,
                               const TensorView& k, const TensorView& v, const TensorView& out, const TensorView& den,
                               const LinearAttentionParams& params);

/// Causal decode/prefill of T new tokens on top of a state: q [B, Hq, T, D], k [B, Hkv, T, D],
/// v [B, Hkv, T, Dv]; new query t sees the state's keys and new keys 0..t. Reads state_in (an
/// empty LinearAttentionState = zeros), writes state_out (may be the same memory as state_in).
/// params.mask.causal/alignment are implied; params.key_padding_mask [B, T] may drop new keys.
void linear_attention_step(const TensorView& out, const LinearAttentionState& state_out, const TensorView& q,
                           const TensorView& k, const TensorView& v, const LinearAttentionState& state_in,
                           const LinearAttentionParams& params);

}  // namespace attn
