#pragma once
// What every variant header (variants/<kind>.hpp) exports, and the coordinates it works on
// (docs/architecture.md, kernels: adding a mask kind). A variant is one mask kind or score
// modifier of the pipeline of docs/contract.md; it is one struct of static functions:
//
//   kKind                     where it enters the pipeline (Kind below)
//   active(p)                 whether the call uses it
//   keep(p, b, h, i, j)       keep rules: is key j visible to query i (fp64 reference, per element)
//   apply(p, s, b, h, i, j)   score stages: the score after this stage (fp64 reference)
//   row(r, lo, hi, add)       fp32 row terms of the fast kernels, keys r.j0 + c for c in [lo, hi):
//                             additive stages add their term (d/ds = 1), keep rules write −inf
//                             where they hide; transforms and callbacks have none (see pipeline.hpp)
//   classify(p, tile)         skip (hides the whole tile), partial (per-element work), full (no work)
//
// The list of variants is variants/pipeline.hpp's Variants; forward, backward and decode iterate it.
// Causal / sliding window / lengths are not in the list: they are per-row key ranges
// (variants/window.hpp) that every kernel applies by range, never per element.
// Models: flashinfer's variants.cuh (one struct per variant with its logits transform and mask),
// FlashAttention's mask.h (tile-level masking); no code taken from either.

#include <cstdint>

#include "core/problem.hpp"

namespace attn::variants {

enum class Kind {
  keep,       // hides keys (bool mask, block mask, mask_mod)
  transform,  // s -> t(s) with derivative t'(s) (softcap)
  additive,   // s -> s + term (ALiBi, bias): d/ds = 1
  callback,   // a user callback on the score (score_mod): fp64 only, with its grad
};

enum class TileClass { skip, partial, full };

/// Keys [j0, j1) against queries [i0, i1) of heads [h0, h1) of logical batch row b.
struct Tile {
  std::int64_t b, h0, h1, i0, i1, j0, j1;
};

/// One query row (logical batch row b, query head h, position i) against keys j0 + c.
struct ScoreRow {
  const core::SdpaProblem& p;
  std::int64_t b, h, i, j0;
};

/// The combined class of a tile under two rules: skip wins, then partial.
constexpr TileClass combine(TileClass a, TileClass b) {
  if (a == TileClass::skip || b == TileClass::skip) return TileClass::skip;
  if (a == TileClass::partial || b == TileClass::partial) return TileClass::partial;
  return TileClass::full;
}

/// The class of a rule that never hides a whole tile: per-element work when active.
inline TileClass per_element(bool active) { return active ? TileClass::partial : TileClass::full; }

}  // namespace attn::variants
