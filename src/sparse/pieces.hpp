#pragma once
// Strided ∪ window ∪ global attention as a partition of its visible (query, key) pairs into dense
// banded pieces (docs/sparse_attention.md). A piece is a set of query rows i = i0 + a·step
// (a < nq) and key rows j = j0 + b·step (b < nk) with the pairs whose a − b lies in a band; it is
// one SDPA call on strided views of q, k, v (the band is its window, top-left aligned). The pieces
// are disjoint and cover the pattern of include/attn/sparse_attention.hpp exactly, so their
// softmaxes merged through the LSE are the one softmax of the union (no key counted twice):
//   A  global query rows (0 ≤ p_i < g): every key (causal: j ≤ p_i);
//   B  other rows × global keys j < g (causal: j ≤ p_i);
//   C  other rows × keys j ≥ g in the window |p_i − j| ≤ w (causal: 0 ≤ p_i − j ≤ w), when w > 0;
//   D  per residue class r mod s: other rows with p_i ≡ r × keys j ≥ g with j ≡ r, outside the
//      window: in class units d = (p_i − j)/s, |d| > ⌊w/s⌋ (two pieces, d above and d below; one
//      when causal); with w = 0 the whole class (causal: d ≥ 0).
// The strided part thus costs Nq·Nk/s, the window Nq·w, the global tokens (Nq + Nk)·g.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace attn::sparse {

inline constexpr std::int64_t kUnbounded = std::numeric_limits<std::int64_t>::max();

/// One dense SDPA call: query rows i0 + a·step, key rows j0 + b·step, visible iff
/// −window_right ≤ a − b ≤ window_left (−1 = unbounded side, as MaskSpec's windows).
struct Piece {
  std::int64_t i0 = 0, nq = 0, j0 = 0, nk = 0, step = 1;
  std::int64_t window_left = -1, window_right = -1;
};

/// The band lo ≤ delta + a − b ≤ hi (kUnbounded / −kUnbounded = open side) as a Piece, shifting the
/// first rows out of the views so that both windows are ≥ 0; appends nothing when it is empty.
inline void add_band(std::vector<Piece>& out, std::int64_t i0, std::int64_t nq, std::int64_t j0, std::int64_t nk,
                     std::int64_t step, std::int64_t delta, std::int64_t lo, std::int64_t hi) {
  const bool has_lo = lo != -kUnbounded, has_hi = hi != kUnbounded;
  if (has_lo && has_hi && lo > hi) return;
  std::int64_t L = has_hi ? hi - delta : 0;  // a − b ≤ L
  std::int64_t R = has_lo ? delta - lo : 0;  // b − a ≤ R
  if (has_hi && L < 0) {                     // keys b < −L are seen by no query: drop them
    j0 += -L * step;
    nk += L;
    if (has_lo) R += L;
    L = 0;
  }
  if (has_lo && R < 0) {  // queries a < −R see no key: drop them (their lse stays −inf here)
    i0 += -R * step;
    nq += R;
    if (has_hi) L += R;
    R = 0;
  }
  if (nq <= 0 || nk <= 0) return;
  out.push_back({i0, nq, j0, nk, step, has_hi ? L : -1, has_lo ? R : -1});
}

/// First index ≥ from with (index + shift) ≡ r (mod s), and how many such indices lie below `to`.
inline std::pair<std::int64_t, std::int64_t> residue_rows(std::int64_t from, std::int64_t to, std::int64_t shift,
                                                          std::int64_t r, std::int64_t s) {
  const std::int64_t first = from + (((r - (from + shift)) % s) + s) % s;
  return {first, first < to ? (to - 1 - first) / s + 1 : 0};
}

/// The pieces of the pattern for Nq queries at positions i + off and Nk keys.
inline std::vector<Piece> make_pieces(std::int64_t Nq, std::int64_t Nk, std::int64_t off, std::int64_t s,
                                      std::int64_t w, std::int64_t g, bool causal) {
  std::vector<Piece> pieces;
  const std::int64_t none = kUnbounded;
  const std::int64_t causal_lo = causal ? 0 : -none;
  const std::int64_t gq0 = std::clamp<std::int64_t>(-off, 0, Nq), gq1 = std::clamp<std::int64_t>(g - off, gq0, Nq);
  const std::int64_t gk = std::min(g, Nk);
  // A: global query rows see every key (the causal band d = p_i − j ≥ 0 with delta = i0 + off − j0).
  if (gq1 > gq0) add_band(pieces, gq0, gq1 - gq0, 0, Nk, 1, gq0 + off, causal_lo, none);
  const std::pair<std::int64_t, std::int64_t> rest[] = {{0, gq0}, {gq1, Nq}};
  for (auto [r0, r1] : rest) {
    if (r1 <= r0) continue;
    // B: global keys.
    if (gk > 0) add_band(pieces, r0, r1 - r0, 0, gk, 1, r0 + off, causal_lo, none);
    // C: the window over the other keys.
    if (w > 0 && Nk > gk) add_band(pieces, r0, r1 - r0, gk, Nk - gk, 1, r0 + off - gk, causal ? 0 : -w, w);
    // D: each residue class outside the window.
    const std::int64_t W = w > 0 ? w / s : -1;  // class distances |d| ≤ W are the window's
    for (std::int64_t r = 0; r < s; ++r) {
      const auto [i0, nq] = residue_rows(r0, r1, off, r, s);
      const auto [j0, nk] = residue_rows(gk, Nk, 0, r, s);
      if (nq == 0 || nk == 0) continue;
      const std::int64_t delta = (i0 + off - j0) / s;  // exact: i0 + off ≡ j0 ≡ r (mod s)
      if (w > 0) {
        add_band(pieces, i0, nq, j0, nk, s, delta, W + 1, none);
        if (!causal) add_band(pieces, i0, nq, j0, nk, s, delta, -none, -(W + 1));
      } else {
        add_band(pieces, i0, nq, j0, nk, s, delta, causal_lo, none);
      }
    }
  }
  return pieces;
}

}  // namespace attn::sparse
