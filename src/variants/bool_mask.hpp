#pragma once
// Dense boolean mask broadcast to [B, Hq, Nq, Nk] (true = attend), read at tensor positions
// (q_start + i, k_start + j), so it also works under varlen. A keep rule.

#include <cstdint>
#include <limits>

#include "core/problem.hpp"
#include "variants/variant.hpp"

namespace attn::variants {

struct BoolMaskRule {
  static constexpr Kind kKind = Kind::keep;
  static bool active(const core::SdpaProblem& p) { return p.bool_mask.defined(); }
  static bool keep(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    if (!p.bool_mask.defined()) return true;
    const std::int64_t off = p.bool_mask.offset(p.tensor_b[b], h, p.tensor_row(b, i), p.tensor_col(b, j));
    return *static_cast<const std::uint8_t*>(p.bool_mask.view.at(off)) != 0;
  }
  static void row(const ScoreRow& r, std::int64_t lo, std::int64_t hi, float* add) {
    const core::SdpaProblem& p = r.p;
    const std::int64_t base = p.bool_mask.offset(p.tensor_b[r.b], r.h, p.tensor_row(r.b, r.i), p.tensor_col(r.b, r.j0));
    const auto* keep = static_cast<const std::uint8_t*>(p.bool_mask.view.data) + base;
    const std::int64_t cs = p.bool_mask.strides[3];
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    if (cs == 1) {  // the usual contiguous row: a branch-free select the compiler vectorises
      for (std::int64_t c = lo; c < hi; ++c) add[c] = keep[c] != 0 ? add[c] : kNegInf;
      // The row's next hi − lo keys (the kernels' next key tile) towards L2, as the bias row does.
      for (std::int64_t c = hi; c < 2 * hi - lo; c += 64) __builtin_prefetch(keep + c, 0, 2);
    } else {
      for (std::int64_t c = lo; c < hi; ++c) add[c] = keep[c * cs] != 0 ? add[c] : kNegInf;
    }
  }
  static TileClass classify(const core::SdpaProblem& p, const Tile&) { return per_element(active(p)); }
};

}  // namespace attn::variants
