#pragma once
// LinearProblem: one validated linear-attention call resolved into sizes, the feature map and the
// per-batch key visibility (docs/linear_attention.md). Built only by validate.cpp, so the
// reference and cpu paths never see an invalid call.

#include <cstdint>
#include <vector>

#include "attn/linear_attention.hpp"

namespace attn::linear {

struct LinearProblem {
  std::int64_t B = 0, Hq = 0, Hkv = 0, G = 1, Nq = 0, Nk = 0, D = 0, Dv = 0;
  std::int64_t F = 0;  // features: D (elu) or m (FAVOR+)
  FeatureMap map = FeatureMap::elu;
  double eps = 1e-6;
  bool causal = false;
  // Per batch row: key length (keys j >= Lk[b] are out) and the causal offset (query i sees keys
  // j <= i + off[b]).
  std::vector<std::int64_t> Lk, off;
  TensorView q, k, v, projection, key_padding_mask;
  // Step calls: the state read (may be undefined = zeros) and written.
  LinearAttentionState state_in, state_out;
  int num_threads = 0;
  std::int64_t chunk = 0;

  /// True when key j of batch row b takes part in the sums (within Lk and not padding).
  bool key_valid(std::int64_t b, std::int64_t j) const;
  /// FAVOR+ input scaling D^(-1/4).
  double favor_scale() const;
};

LinearProblem validate_forward(const LinearAttentionOutputs& o, const TensorView& q, const TensorView& k,
                               const TensorView& v, const LinearAttentionParams& params);
LinearProblem validate_backward(const LinearAttentionGrads& g, const TensorView& dout, const TensorView& q,
                                const TensorView& k, const TensorView& v, const TensorView& out, const TensorView& den,
                                const LinearAttentionParams& params);
LinearProblem validate_step(const TensorView& out, const LinearAttentionState& state_out, const TensorView& q,
                            const TensorView& k, const TensorView& v, const LinearAttentionState& state_in,
                            const LinearAttentionParams& params);

}  // namespace attn::linear
