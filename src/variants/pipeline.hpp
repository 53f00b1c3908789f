#pragma once
// The score pipeline of docs/contract.md, composed from the one list of variants: the fp64
// per-element form (the reference backend), the fp32 row form and tile classification (the fast
// forward, backward and decode kernels). A new mask kind is one header (variants/variant.hpp says
// what it exports) and one entry in Variants below, plus its validation and binding.
//
// Pipeline of a visible element: s = scale·(q_i·k_j), then the score stages in list order
// (softcap, ALiBi, bias, score_mod); it is visible iff inside the row's window range
// (variants/window.hpp) and every keep rule keeps it. In fp32 the additive terms and keep rules
// of a row are gathered first (add[c], −inf where hidden), then s = softcap(scale·dot) + add[c].

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/problem.hpp"
#include "variants/alibi.hpp"
#include "variants/bias.hpp"
#include "variants/block_mask.hpp"
#include "variants/bool_mask.hpp"
#include "variants/callbacks.hpp"
#include "variants/softcap.hpp"
#include "variants/variant.hpp"
#include "variants/window.hpp"

namespace attn::variants {

template <class... Vs>
struct List {
  template <class F>
  static void for_each(F&& f) {
    (f(std::type_identity<Vs>{}), ...);
  }
  template <class F>
  static bool any(F&& f) {
    return (f(std::type_identity<Vs>{}) || ...);
  }
};

/// Every variant, score stages in pipeline order.
using Variants = List<BlockMaskRule, MaskModRule, BoolMaskRule, Softcap, AlibiTerm, BiasTerm, ScoreModStage>;

template <class V>
inline constexpr bool kIsCallback = requires { V::kCallback; };

/// True when a tile needs a per-element pass after Q·Kᵀ (any variant in use).
inline bool needs_element_pass(const core::SdpaProblem& p) {
  return Variants::any([&](auto v) { return decltype(v)::type::active(p); });
}
/// True when a callback is given: the element pass then runs the fp64 pipeline per element.
inline bool has_callback(const core::SdpaProblem& p) {
  return Variants::any([&](auto v) {
    using V = typename decltype(v)::type;
    if constexpr (kIsCallback<V>) return V::active(p);
    else return false;
  });
}

/// Skip / partial / full of a tile under every variant (lengths and window are the kernel's ranges).
inline TileClass classify_tile(const core::SdpaProblem& p, const Tile& t) {
  TileClass c = TileClass::full;
  Variants::for_each([&](auto v) { c = combine(c, decltype(v)::type::classify(p, t)); });
  return c;
}

// ---- fp64, per element (the reference) ----

/// The keep rules: block mask, mask_mod, bool mask.
inline bool visible_extra(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  return !Variants::any([&](auto v) {
    using V = typename decltype(v)::type;
    if constexpr (V::kKind == Kind::keep) return !V::keep(p, b, h, i, j);
    else return false;
  });
}

/// Full visibility of key j to query i (head h, batch row b).
inline bool visible(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
  const RowRange r = window_range(p, b, i);
  return j >= r.lo && j < r.hi && visible_extra(p, b, h, i, j);
}

/// The score of a visible element from the raw dot product q_i·k_j. `pre_softcap` receives the
/// value before the transform, `pre_mod` the value before the callback (for their derivatives).
/// A stage giving −inf (a −inf bias) ends the pipeline: the key is hidden.
inline double score(const core::SdpaProblem& p, double dot, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j,
                    double* pre_softcap = nullptr, double* pre_mod = nullptr) {
  double s = p.scale * dot;
  bool hidden = false;
  Variants::for_each([&](auto v) {
    using V = typename decltype(v)::type;
    if constexpr (V::kKind != Kind::keep) {
      if (hidden) return;
      if constexpr (V::kKind == Kind::transform)
        if (pre_softcap) *pre_softcap = s;
      if constexpr (V::kKind == Kind::callback)
        if (pre_mod) *pre_mod = s;
      s = V::apply(p, s, b, h, i, j);
      hidden = s == -std::numeric_limits<double>::infinity();
    }
  });
  return s;
}

/// The derivative of the score with respect to scale·dot and (for dbias) to the bias, given the
/// pre-stage values score() recorded: softcap' · score_mod', and score_mod'.
inline void score_grads(const core::SdpaProblem& p, double pre_softcap, double pre_mod, std::int64_t b, std::int64_t h,
                        std::int64_t i, std::int64_t j, double* d_scaled, double* d_bias) {
  const auto& sm = p.mask().score_mod;
  const double g_mod = sm ? sm.grad(pre_mod, b, h, i, j) : 1.0;
  *d_bias = g_mod;  // the bias enters before score_mod
  *d_scaled = Softcap::grad(p.mask().softcap, pre_softcap) * g_mod;
}

// ---- fp32, per row (the fast kernels) ----

/// add[c] for c in [lo, hi): the row's additive terms (ALiBi, bias), −inf where a keep rule hides
/// key j0 + c. Callbacks are not included (has_callback() selects the fp64 element pass).
inline void row_terms(const ScoreRow& r, std::int64_t lo, std::int64_t hi, float* add) {
  for (std::int64_t c = lo; c < hi; ++c) add[c] = 0.0f;
  Variants::for_each([&](auto v) {
    using V = typename decltype(v)::type;
    if constexpr ((V::kKind == Kind::keep || V::kKind == Kind::additive) && !kIsCallback<V>)
      if (V::active(r.p)) V::row(r, lo, hi, add);
  });
}

/// The row's scores in place, s[c·ld] = softcap(scale·s[c·ld]) + add[c] (−inf where add is −inf,
/// so a NaN dot of hidden memory cannot leak); with `f`, f[c] = d score / d(scale·dot).
/// cap = 0: no softcap.
inline void finish_row(float* s, std::int64_t ld, const float* add, std::int64_t lo, std::int64_t hi, float scale,
                       float cap, float* f = nullptr) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (cap > 0.0f) {
    for (std::int64_t c = lo; c < hi; ++c) {
      float& x = s[c * ld];
      if (add[c] == kNegInf) {
        x = kNegInf;
        continue;
      }
      float t = 0.0f;
      x = Softcap::value_f32(cap, x * scale, &t) + add[c];
      if (f) f[c] = 1.0f - t * t;
    }
  } else {
    for (std::int64_t c = lo; c < hi; ++c) {
      float& x = s[c * ld];
      x = add[c] == kNegInf ? kNegInf : x * scale + add[c];
      if (f && add[c] != kNegInf) f[c] = 1.0f;
    }
  }
}

/// The fp64 pipeline on one element for the callback path: the score (−inf when hidden) and,
/// when asked, its derivatives (score_grads).
inline float element_fp64(const core::SdpaProblem& p, float dot, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j,
                          float* d_scaled = nullptr, float* d_bias = nullptr) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  if (!visible_extra(p, b, h, i, j)) return static_cast<float>(kNegInf);
  double pre_cap = 0.0, pre_mod = 0.0;
  const double x = score(p, dot, b, h, i, j, &pre_cap, &pre_mod);
  if (x != kNegInf && d_scaled) {
    double ds = 0.0, db = 0.0;
    score_grads(p, pre_cap, pre_mod, b, h, i, j, &ds, &db);
    *d_scaled = static_cast<float>(ds);
    if (d_bias) *d_bias = static_cast<float>(db);
  }
  return static_cast<float>(x);
}

}  // namespace attn::variants
