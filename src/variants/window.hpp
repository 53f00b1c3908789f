#pragma once
// Causal / sliding-window / lengths visibility as a per-row key range (DESIGN.md §5):
// key j is visible to query i of batch row b iff  i < Lq_b,  j < Lk_b  and
//   i + off_b - window_left <= j <= i + off_b + window_right   (-1 = unbounded side).

#include <algorithm>
#include <cstdint>

#include "core/problem.hpp"

namespace attn::variants {

/// Half-open range [lo, hi) of keys visible to row i of batch row b by lengths and window alone.
/// Empty (lo >= hi) for padded rows i >= Lq_b.
struct RowRange {
  std::int64_t lo = 0, hi = 0;
  bool empty() const { return lo >= hi; }
};

inline RowRange window_range(const core::SdpaProblem& p, std::int64_t b, std::int64_t i) {
  const std::int64_t Lk = p.Lk[b];
  if (i >= p.Lq[b]) return {0, 0};
  const std::int64_t diag = i + p.off[b];
  const std::int64_t lo = p.window_left < 0 ? 0 : std::max<std::int64_t>(0, diag - p.window_left);
  const std::int64_t hi = p.window_right < 0 ? Lk : std::min<std::int64_t>(Lk, diag + p.window_right + 1);
  return {lo, std::max(lo, hi)};
}

}  // namespace attn::variants
