#pragma once
// Additive bias broadcast to [B, Hq, Nq, Nk], read at tensor positions (q_start + i, k_start + j):
//   s -> s + bias[b, h, i, j]     d/ds = 1, d/dbias = 1
// A bias of −inf hides the key: no later stage undoes it, and a NaN dot (hidden memory) cannot leak.

#include <cstdint>
#include <limits>

#include "core/dtype_visit.hpp"
#include "core/problem.hpp"
#include "variants/variant.hpp"

namespace attn::variants {

struct BiasTerm {
  static constexpr Kind kKind = Kind::additive;
  static bool active(const core::SdpaProblem& p) { return p.bias.defined(); }
  static double value(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    if (!p.bias.defined()) return 0.0;
    return load_f64(p.bias.view, p.bias.offset(p.tensor_b[b], h, p.tensor_row(b, i), p.tensor_col(b, j)));
  }
  static double apply(const core::SdpaProblem& p, double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    const double x = value(p, b, h, i, j);
    return x == -std::numeric_limits<double>::infinity() ? x : s + x;
  }
  static void row(const ScoreRow& r, std::int64_t lo, std::int64_t hi, float* add) {
    const core::SdpaProblem& p = r.p;
    const std::int64_t base = p.bias.offset(p.tensor_b[r.b], r.h, p.tensor_row(r.b, r.i), p.tensor_col(r.b, r.j0));
    const std::int64_t cs = p.bias.strides[3];
    core::visit_float(p.bias.view.dtype, "bias", [&](auto d) {
      using E = core::Elem<decltype(d)::value>;
      const auto* x = static_cast<const typename E::T*>(p.bias.view.data) + base;
      if (cs == 1) {  // the usual contiguous row: a loop the compiler vectorises
        for (std::int64_t c = lo; c < hi; ++c) add[c] += E::to_f32(x[c]);
        // The row's next hi − lo keys (the kernels' next key tile) towards L2: the rows of a tile
        // lie a bias row apart, too far apart for the hardware prefetchers.
        for (std::int64_t c = hi; c < 2 * hi - lo; c += 64 / static_cast<std::int64_t>(sizeof(typename E::T)))
          __builtin_prefetch(x + c, 0, 2);
      } else {
        for (std::int64_t c = lo; c < hi; ++c) add[c] += E::to_f32(x[c * cs]);
      }
    });
  }
  static TileClass classify(const core::SdpaProblem& p, const Tile&) { return per_element(active(p)); }
};

}  // namespace attn::variants
