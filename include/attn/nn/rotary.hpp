#pragma once
/// nn::RotaryEmbedding (RoPE, Su et al. 2021, "RoFormer"): rotates pairs of the first rotary_dim
/// dims of each head by angle θ_i = p · base^(−2i/rotary_dim) at position p, i < rotary_dim/2:
///   x1' = x1·cos θ_i − x2·sin θ_i,   x2' = x2·cos θ_i + x1·sin θ_i.
/// Pairs: half_split (GPT-NeoX, Hugging Face LLaMA): (i, i + rotary_dim/2); interleaved (GPT-J):
/// (2i, 2i+1). The inverse frequencies, angles, cos and sin are computed in fp32 as Hugging Face
/// does. Dims past rotary_dim pass through. Backward applies the transposed (inverse) rotation.

#include <cstdint>
#include <vector>

#include "attn/tensor.hpp"

namespace attn::nn {

enum class RotaryConvention { half_split, interleaved };
const char* rotary_convention_name(RotaryConvention convention);

struct RotaryConfig {
  std::int64_t rotary_dim = 0;  ///< even, ≤ head dim; 0 = the whole head dim
  double base = 10000.0;
  RotaryConvention convention = RotaryConvention::half_split;
};

/// Positions: token n of batch row b is at position offsets[b] + n (offsets empty: 0 for every
/// row; one entry: the same for every row; else one per row). Cached decoding passes the cache
/// lengths as offsets.
class RotaryEmbedding {
 public:
  /// Throws attn::Error for an odd rotary_dim, rotary_dim > head_dim, or base ≤ 0.
  RotaryEmbedding(std::int64_t head_dim, const RotaryConfig& config = {});

  std::int64_t head_dim() const { return head_dim_; }
  std::int64_t rotary_dim() const { return rotary_dim_; }
  const RotaryConfig& config() const { return config_; }

  /// Rotates x [B, H, N, D] (f32 or f64, any strides) in place.
  void forward(const TensorView& x, const std::vector<std::int64_t>& offsets = {}) const;
  /// Given dL/dx' in place, leaves dL/dx (the inverse rotation).
  void backward(const TensorView& dx, const std::vector<std::int64_t>& offsets = {}) const;

  /// fp32 angle of pair i at position p (the value forward uses).
  float angle(std::int64_t position, std::int64_t pair) const;

 private:
  void rotate(const TensorView& x, const std::vector<std::int64_t>& offsets, bool inverse) const;
  std::int64_t head_dim_ = 0, rotary_dim_ = 0;
  RotaryConfig config_;
  std::vector<float> inv_freq_;  // [rotary_dim / 2]
};

}  // namespace attn::nn
