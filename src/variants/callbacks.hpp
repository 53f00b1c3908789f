#pragma once
// The user callbacks of MaskSpec (FlexAttention-style): mask_mod(b, h, i, j) is a keep rule,
// score_mod the last score stage (value, and grad for the backward). Both run in fp64 per element:
// the fast kernels take pipeline.hpp's generic element pass whenever one is given.

#include <cstdint>

#include "core/problem.hpp"
#include "variants/variant.hpp"

namespace attn::variants {

struct MaskModRule {
  static constexpr Kind kKind = Kind::keep;
  static constexpr bool kCallback = true;
  static bool active(const core::SdpaProblem& p) { return static_cast<bool>(p.mask().mask_mod); }
  static bool keep(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    const auto& mm = p.mask().mask_mod;
    return !mm || mm(b, h, i, j);
  }
  static TileClass classify(const core::SdpaProblem& p, const Tile&) { return per_element(active(p)); }
};

struct ScoreModStage {
  static constexpr Kind kKind = Kind::callback;
  static constexpr bool kCallback = true;
  static bool active(const core::SdpaProblem& p) { return static_cast<bool>(p.mask().score_mod); }
  static double apply(const core::SdpaProblem& p, double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    const auto& sm = p.mask().score_mod;
    return sm ? sm.value(s, b, h, i, j) : s;
  }
  static TileClass classify(const core::SdpaProblem& p, const Tile&) { return per_element(active(p)); }
};

}  // namespace attn::variants
