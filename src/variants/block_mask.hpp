#pragma once
// Block-sparse mask: one keep bit per (q block, k block) with the mask's own block sizes;
// keep has shape [B or 1, Hq or 1, ceil(Nq/qb), ceil(Nk/kb)]. A keep rule: hides every key of
// a dropped block; a tile all of whose blocks are dropped (for every head) is skipped.

#include <cstdint>
#include <limits>

#include "core/problem.hpp"
#include "variants/variant.hpp"

namespace attn::variants {

struct BlockMaskRule {
  static constexpr Kind kKind = Kind::keep;
  static bool active(const core::SdpaProblem& p) { return p.mask().block_mask.has_value(); }

  static bool keep_block(const BlockMask& bm, std::int64_t b, std::int64_t h, std::int64_t qblk, std::int64_t kblk) {
    const TensorView& t = bm.keep;
    const std::int64_t off = (t.shape[0] == 1 ? 0 : b) * t.strides[0] + (t.shape[1] == 1 ? 0 : h) * t.strides[1] +
                             qblk * t.strides[2] + kblk * t.strides[3];
    return *static_cast<const std::uint8_t*>(t.at(off)) != 0;
  }
  static bool keep(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    const auto& bm = p.mask().block_mask;
    return !bm || keep_block(*bm, b, h, i / bm->q_block, j / bm->k_block);
  }
  static void row(const ScoreRow& r, std::int64_t lo, std::int64_t hi, float* add) {
    const BlockMask& bm = *r.p.mask().block_mask;
    const std::int64_t qblk = r.i / bm.q_block;
    for (std::int64_t c = lo; c < hi; ++c)
      if (!keep_block(bm, r.b, r.h, qblk, (r.j0 + c) / bm.k_block)) add[c] = -std::numeric_limits<float>::infinity();
  }
  static TileClass classify(const core::SdpaProblem& p, const Tile& t) {
    const auto& bm = p.mask().block_mask;
    if (!bm) return TileClass::full;
    const std::int64_t qb0 = t.i0 / bm->q_block, qb1 = (t.i1 - 1) / bm->q_block;
    const std::int64_t kb0 = t.j0 / bm->k_block, kb1 = (t.j1 - 1) / bm->k_block;
    for (std::int64_t h = t.h0; h < t.h1; ++h)
      for (std::int64_t qb = qb0; qb <= qb1; ++qb)
        for (std::int64_t kb = kb0; kb <= kb1; ++kb)
          if (keep_block(*bm, t.b, h, qb, kb)) return TileClass::partial;
    return TileClass::skip;
  }
};

}  // namespace attn::variants
