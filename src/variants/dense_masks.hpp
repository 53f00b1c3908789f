#pragma once
// Dense masks broadcast to [B, Hq, Nq, Nk]: a boolean mask (true = attend) and an additive bias.
// Both are read at tensor positions (q_start + i, k_start + j), so they also work under varlen.

#include <cstdint>

#include "core/problem.hpp"

namespace attn::variants {

inline bool bool_mask_keep(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  if (!p.bool_mask.defined()) return true;
  const std::int64_t off = p.bool_mask.offset(p.tensor_b[b], h, p.tensor_row(b, i), p.tensor_col(b, j));
  return *static_cast<const std::uint8_t*>(p.bool_mask.view.at(off)) != 0;
}

inline double bias_value(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  if (!p.bias.defined()) return 0.0;
  return load_f64(p.bias.view, p.bias.offset(p.tensor_b[b], h, p.tensor_row(b, i), p.tensor_col(b, j)));
}

}  // namespace attn::variants
