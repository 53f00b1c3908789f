#pragma once
// Block-sparse mask: one keep bit per (q block, k block) with the mask's own block sizes;
// keep has shape [B or 1, Hq or 1, ceil(Nq/qb), ceil(Nk/kb)].

#include <cstdint>

#include "core/problem.hpp"

namespace attn::variants {

inline bool block_mask_keep_block(const BlockMask& bm, std::int64_t b, std::int64_t h, std::int64_t qblk, std::int64_t kblk) {
  const TensorView& t = bm.keep;
  const std::int64_t off = (t.shape[0] == 1 ? 0 : b) * t.strides[0] + (t.shape[1] == 1 ? 0 : h) * t.strides[1] +
                           qblk * t.strides[2] + kblk * t.strides[3];
  return *static_cast<const std::uint8_t*>(t.at(off)) != 0;
}

inline bool block_mask_keep(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  const auto& bm = p.mask().block_mask;
  if (!bm) return true;
  return block_mask_keep_block(*bm, b, h, i / bm->q_block, j / bm->k_block);
}

}  // namespace attn::variants
