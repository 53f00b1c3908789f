#pragma once
// The naive same-precision backward of docs/architecture.md §9, for the tolerance rule of the cpu backward:
// what a framework's "math" backward does in the input dtype. fp32 accumulation; S, P, dP and dS
// rounded to the input dtype (for f32: plain fp32 loops); P from its own softmax, Δ = rowsum(dO∘O)
// from the given out; the same visibility, score pipeline, dropout bits and derivatives as the
// reference (variants/*.hpp).

#include <cmath>
#include <limits>
#include <vector>

#include "common/test_util.hpp"
#include "core/philox.hpp"
#include "core/problem.hpp"
#include "cpu/naive_lowp.hpp"
#include "variants/pipeline.hpp"

namespace attn::test {

/// dq, dk, dv (f64 views shaped like q, k, v) = the naive backward in q's dtype precision.
inline void naive_lowp_backward(const TensorView& dq, const TensorView& dk, const TensorView& dv, const TensorView& dout,
                                const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                                const SdpaParams& params) {
  const core::SdpaProblem p = core::validate_forward(SdpaOutputs{dout, {}, {}}, q, k, v, params);
  const DType dt = q.dtype;
  const float inf = std::numeric_limits<float>::infinity();
  const std::int64_t tB = q.shape[0];
  // fp32 accumulators in logical [tB, H, N, D] order.
  std::vector<float> gq(static_cast<std::size_t>(tB * p.Hq * p.Nq * p.D), 0.0f);
  std::vector<float> gk(static_cast<std::size_t>(tB * p.Hkv * p.Nk * p.D), 0.0f), gv(static_cast<std::size_t>(tB * p.Hkv * p.Nk * p.Dv), 0.0f);
  auto qi = [&](std::int64_t tb, std::int64_t h, std::int64_t n) { return ((tb * p.Hq + h) * p.Nq + n); };
  auto ki = [&](std::int64_t tb, std::int64_t h, std::int64_t n) { return ((tb * p.Hkv + h) * p.Nk + n); };
  const std::size_t nk = static_cast<std::size_t>(p.Nk) + 1;
  std::vector<float> s(nk), pre_cap(nk), pre_mod(nk), P(nk), Pd(nk), dP(nk), z(nk);
  const auto& sm = p.mask().score_mod;
  for (std::int64_t b = 0; b < p.B; ++b)
    for (std::int64_t h = 0; h < p.Hq; ++h)
      for (std::int64_t i = 0; i < p.Lq[b]; ++i) {
        const std::int64_t tb = p.tensor_b[b], row = p.tensor_row(b, i), kvh = h / p.G, Lk = p.Lk[b];
        float m = -inf;
        for (std::int64_t j = 0; j < Lk; ++j) {
          s[j] = -inf;
          if (!variants::visible(p, b, h, i, j)) continue;
          float dot = 0.0f;
          for (std::int64_t d = 0; d < p.D; ++d)
            dot += static_cast<float>(at(q, tb, h, row, d)) * static_cast<float>(at(k, tb, kvh, p.tensor_col(b, j), d));
          double pc = 0.0, pm = 0.0;
          s[j] = round_to(dt, static_cast<float>(variants::score(p, dot, b, h, i, j, &pc, &pm)));
          pre_cap[j] = static_cast<float>(pc);
          pre_mod[j] = static_cast<float>(pm);
          m = std::max(m, s[j]);
        }
        if (m == -inf) continue;
        float l = 0.0f;
        for (std::int64_t j = 0; j < Lk; ++j) l += s[j] == -inf ? 0.0f : std::exp(s[j] - m);
        float delta = 0.0f;  // Δ = rowsum(dO∘O), as the reference and the fused kernels
        for (std::int64_t e = 0; e < p.Dv; ++e) delta += static_cast<float>(at(dout, tb, h, row, e)) * static_cast<float>(at(out, tb, h, row, e));
        delta = round_to(dt, delta);
        for (std::int64_t j = 0; j < Lk; ++j) {
          P[j] = Pd[j] = dP[j] = 0.0f;
          if (s[j] == -inf) continue;
          P[j] = round_to(dt, std::exp(s[j] - m) / l);
          z[j] = 1.0f;
          if (p.has_dropout())
            z[j] = core::dropout_keep(params.dropout_seed, params.dropout_offset, p.dropout_threshold, b * p.Hq + h, i, j)
                       ? static_cast<float>(1.0 / (1.0 - p.dropout_p))
                       : 0.0f;
          Pd[j] = round_to(dt, P[j] * z[j]);
          float dpj = 0.0f;
          for (std::int64_t e = 0; e < p.Dv; ++e)
            dpj += static_cast<float>(at(dout, tb, h, row, e)) * static_cast<float>(at(v, tb, kvh, p.tensor_col(b, j), e));
          dP[j] = round_to(dt, round_to(dt, dpj) * z[j]);
        }
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (s[j] == -inf) continue;
          const std::int64_t kj = p.tensor_col(b, j);
          for (std::int64_t e = 0; e < p.Dv; ++e) gv[ki(tb, kvh, kj) * p.Dv + e] += Pd[j] * static_cast<float>(at(dout, tb, h, row, e));
          float dt_j = round_to(dt, P[j] * (dP[j] - delta));
          if (sm) dt_j *= static_cast<float>(sm.grad(pre_mod[j], b, h, i, j));
          dt_j *= static_cast<float>(variants::softcap_grad(p.mask().softcap, pre_cap[j]) * p.scale);
          dt_j = round_to(dt, dt_j);
          for (std::int64_t d = 0; d < p.D; ++d) {
            gq[qi(tb, h, row) * p.D + d] += dt_j * static_cast<float>(at(k, tb, kvh, kj, d));
            gk[ki(tb, kvh, kj) * p.D + d] += dt_j * static_cast<float>(at(q, tb, h, row, d));
          }
        }
      }
  auto put = [&](const TensorView& t, const std::vector<float>& g, std::int64_t H, std::int64_t N, std::int64_t Dd) {
    for_each_element(t, [&](const auto& idx, std::int64_t off) {
      store_f64(t, off, round_to(dt, g[static_cast<std::size_t>(((idx[0] * H + idx[1]) * N + idx[2]) * Dd + idx[3])]));
    });
  };
  put(dq, gq, p.Hq, p.Nq, p.D);
  put(dk, gk, p.Hkv, p.Nk, p.D);
  put(dv, gv, p.Hkv, p.Nk, p.Dv);
}

}  // namespace attn::test
