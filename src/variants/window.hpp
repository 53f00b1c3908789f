#pragma once
// Causal / sliding-window / lengths visibility as a per-row key range (docs/contract.md):
// key j is visible to query i of batch row b iff  i < Lq_b,  j < Lk_b  and
//   i + off_b - window_left <= j <= i + off_b + window_right   (-1 = unbounded side).
// Every kernel applies it by range (tiles outside every row's range are skipped, ranges that cut a
// tile become lane masks), never per element; decode uses the same rule with off = len_b − Nq.

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

/// The rule on plain numbers: Lq, Lk the row's lengths, off its alignment offset.
inline RowRange window_range(std::int64_t Lq, std::int64_t Lk, std::int64_t off, std::int64_t window_left,
                             std::int64_t window_right, std::int64_t i) {
  if (i >= Lq) return {0, 0};
  const std::int64_t diag = i + off;
  const std::int64_t lo = window_left < 0 ? 0 : std::max<std::int64_t>(0, diag - window_left);
  const std::int64_t hi = window_right < 0 ? Lk : std::min<std::int64_t>(Lk, diag + window_right + 1);
  return {lo, std::max(lo, hi)};
}

inline RowRange window_range(const core::SdpaProblem& p, std::int64_t b, std::int64_t i) {
  return window_range(p.Lq[b], p.Lk[b], p.off[b], p.window_left, p.window_right, i);
}

}  // namespace attn::variants
