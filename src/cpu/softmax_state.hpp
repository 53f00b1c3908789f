#pragma once
// SoftmaxState: the running (max m, sum l) of one row of an online softmax (Milakov & Gimelshein,
// "Online normalizer calculation for softmax", 2018; FlashAttention-2, Dao 2023). It is the one
// place where the −inf cases live:
//   - a row that has seen no visible key has m = −inf, l = 0; update() with a −inf tile max keeps
//     it so (and asks for no rescale);
//   - finalize() of such a row gives 1/l = 0 (out = 0) and lse() = −inf (docs/contract.md §6).
// The accumulator rows themselves live in the kernels' tiles; update() returns the factor α by
// which they must be rescaled.

#include <cmath>
#include <limits>

namespace attn::cpu {

struct SoftmaxState {
  static constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float m = kNegInf;  // running max of the scores seen
  float l = 0.0f;     // running Σ exp(s - m)

  /// True while no visible key has been seen.
  bool empty() const { return m == kNegInf; }

  /// Starts a tile whose scores have maximum `tile_max`: returns the new max to subtract (or −inf
  /// when the row is still empty: then skip the tile) and sets *alpha = exp(m_old − m_new), the
  /// rescale factor of the accumulator (0 when the row was empty, 1 when the max did not move).
  float begin_tile(float tile_max, float* alpha) {
    const float m_new = tile_max > m ? tile_max : m;
    if (m_new == kNegInf) {
      *alpha = 1.0f;
      return kNegInf;
    }
    *alpha = m == kNegInf ? 0.0f : (m_new == m ? 1.0f : std::exp(m - m_new));
    m = m_new;
    l *= *alpha;
    return m_new;
  }
  /// begin_tile, except that a max that grows by at most `slack` is kept (α = 1): exp(s − m) ≤
  /// e^slack then. Exact all the same (l and the accumulator share m); fewer rescales.
  float begin_tile_lazy(float tile_max, float slack, float* alpha) {
    if (m != kNegInf && tile_max <= m + slack) {
      *alpha = 1.0f;
      return m;
    }
    return begin_tile(tile_max, alpha);
  }
  /// Adds the sum of exp(s − m) of the tile just processed.
  void add(float tile_sum) { l += tile_sum; }

  /// Merges another partial state (split-KV): returns the factors for this and the other
  /// accumulator, in that order, so that acc = a_self·acc + a_other·acc_other.
  void merge(const SoftmaxState& other, float* a_self, float* a_other) {
    const float m_new = other.m > m ? other.m : m;
    if (m_new == kNegInf) {
      *a_self = *a_other = 0.0f;
      return;
    }
    *a_self = m == kNegInf ? 0.0f : std::exp(m - m_new);
    *a_other = other.m == kNegInf ? 0.0f : std::exp(other.m - m_new);
    l = l * *a_self + other.l * *a_other;
    m = m_new;
  }

  /// 1/l, or 0 for a fully masked row (so out = 0, never NaN).
  float finalize() const { return l > 0.0f ? 1.0f / l : 0.0f; }
  /// Natural-log log-sum-exp of the row, −inf when fully masked.
  float lse() const { return l > 0.0f ? m + std::log(l) : kNegInf; }
};

}  // namespace attn::cpu
