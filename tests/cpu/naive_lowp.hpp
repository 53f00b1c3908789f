#pragma once
// The naive same-precision attention of docs/architecture.md §9, for the tolerance rule: fp32 accumulation,
// with the inputs, S, P and out rounded to the input dtype (for f32: plain fp32 loops). It follows
// the reference's visibility and score pipeline (variants/pipeline.hpp) element by element.

#include <cmath>
#include <limits>
#include <vector>

#include "common/test_util.hpp"
#include "core/philox.hpp"
#include "core/problem.hpp"
#include "variants/pipeline.hpp"

namespace attn::test {

inline float round_to(DType dt, float x) {
  if (dt == DType::bf16) return bf16_to_f32(f32_to_bf16(x));
  if (dt == DType::f16) return f16_to_f32(f32_to_f16(x));
  return x;
}

/// out (f64 view, shape of the real out) = naive attention in q's dtype precision.
inline void naive_lowp_forward(const TensorView& out, const TensorView& q, const TensorView& k, const TensorView& v,
                               const SdpaParams& params) {
  const core::SdpaProblem p = core::validate_forward(SdpaOutputs{out, {}, {}}, q, k, v, params);
  const DType dt = q.dtype;
  const float inf = std::numeric_limits<float>::infinity();
  for_each_element(out, [&](const auto&, std::int64_t off) { store_f64(out, off, 0.0); });
  std::vector<float> s(static_cast<std::size_t>(p.Nk) + 1), acc(static_cast<std::size_t>(p.Dv));
  for (std::int64_t b = 0; b < p.B; ++b)
    for (std::int64_t h = 0; h < p.Hq; ++h)
      for (std::int64_t i = 0; i < p.Lq[b]; ++i) {
        const std::int64_t tb = p.tensor_b[b], row = p.tensor_row(b, i), kvh = h / p.G;
        float m = -inf;
        for (std::int64_t j = 0; j < p.Lk[b]; ++j) {
          s[j] = -inf;
          if (!variants::visible(p, b, h, i, j)) continue;
          float dot = 0.0f;
          for (std::int64_t d = 0; d < p.D; ++d)
            dot += static_cast<float>(at(q, tb, h, row, d)) * static_cast<float>(at(k, tb, kvh, p.tensor_col(b, j), d));
          s[j] = round_to(dt, static_cast<float>(variants::score(p, dot, b, h, i, j)));
          m = std::max(m, s[j]);
        }
        if (m == -inf) continue;
        float l = 0.0f;
        for (std::int64_t j = 0; j < p.Lk[b]; ++j) l += s[j] == -inf ? 0.0f : std::exp(s[j] - m);
        for (std::int64_t j = 0; j < p.Lk[b]; ++j) {  // s becomes P (rounded), dropout applied
          if (s[j] == -inf) { s[j] = 0.0f; continue; }
          s[j] = round_to(dt, std::exp(s[j] - m) / l);
          if (p.has_dropout()) {
            const bool keep = core::dropout_keep(params.dropout_seed, params.dropout_offset, p.dropout_threshold, b * p.Hq + h, i, j);
            s[j] = keep ? s[j] / static_cast<float>(1.0 - p.dropout_p) : 0.0f;
          }
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (std::int64_t j = 0; j < p.Lk[b]; ++j) {
          if (s[j] == 0.0f) continue;
          for (std::int64_t d = 0; d < p.Dv; ++d) acc[d] += s[j] * static_cast<float>(at(v, tb, kvh, p.tensor_col(b, j), d));
        }
        for (std::int64_t d = 0; d < p.Dv; ++d) set(out, round_to(dt, acc[d]), tb, h, row, d);
      }
}

}  // namespace attn::test
