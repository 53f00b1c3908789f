#pragma once
// The per-element visibility rule and score pipeline of DESIGN.md §5, composed from the variant
// headers. The reference backend calls these per element; fast kernels use window_range for whole
// tiles and call `visible_extra` / `score_extra` only on partial tiles.

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/problem.hpp"
#include "variants/block_mask.hpp"
#include "variants/dense_masks.hpp"
#include "variants/score_mods.hpp"
#include "variants/window.hpp"

namespace attn::variants {

/// The visibility terms beyond lengths and window: block mask, mask_mod, bool mask.
inline bool visible_extra(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  if (!block_mask_keep(p, b, h, i, j)) return false;
  const auto& mm = p.mask().mask_mod;
  if (mm && !mm(b, h, i, j)) return false;
  return bool_mask_keep(p, b, h, i, j);
}

/// Full visibility of key j to query i (head h, batch row b).
inline bool visible(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  const RowRange r = window_range(p, b, i);
  return j >= r.lo && j < r.hi && visible_extra(p, b, h, i, j);
}

/// Steps 1–5 of the pipeline for a visible element, from the raw dot product q_i·k_j.
/// `pre_mod` receives the value before score_mod (needed for its derivative).
inline double score(const core::SdpaProblem& p, double dot, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j,
                    double* pre_softcap = nullptr, double* pre_mod = nullptr) {
  double s = p.scale * dot;                                // 1. scale
  if (pre_softcap) *pre_softcap = s;
  s = softcap_apply(p.mask().softcap, s);                  // 2. softcap
  s += alibi_term(p, b, h, i, j);                          // 3. ALiBi
  const double bias = bias_value(p, b, h, i, j);          // 4. additive bias; -inf hides the key for
  if (bias == -std::numeric_limits<double>::infinity())    //    good: no later step undoes it, and a
    return bias;                                           //    NaN dot (hidden memory) cannot leak
  s += bias;
  if (pre_mod) *pre_mod = s;
  const auto& sm = p.mask().score_mod;                     // 5. score_mod
  if (sm) s = sm.value(s, b, h, i, j);
  return s;                                                // 6. (masking) is the caller's visible()
}

}  // namespace attn::variants
