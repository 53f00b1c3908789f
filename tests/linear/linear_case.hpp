#pragma once
// Shared pieces of the linear-attention tests: the formulas of docs/linear_attention.md written
// out in fp64 in their prefix-sum form (S_i = Σ_{j visible to i} φ(k_j) v_jᵀ accumulated as i
// advances: neither the library's quadratic reference nor its chunked cpu path), and helpers.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "attn/linear_attention.hpp"
#include "common/test_util.hpp"

namespace attn::test {

/// φ(x) written out: elu(x) + 1, or exp(ωᵀx / D^¼ − ‖x‖² / (2√D)) / √m.
inline std::vector<double> phi_of(const std::vector<double>& x, FeatureMap map, const std::vector<double>& omega,
                                  std::int64_t m) {
  const auto D = static_cast<std::int64_t>(x.size());
  if (map == FeatureMap::elu) {
    std::vector<double> r(x.size());
    for (std::size_t d = 0; d < x.size(); ++d) r[d] = x[d] > 0 ? x[d] + 1.0 : std::exp(x[d]);
    return r;
  }
  double sq = 0.0;
  for (double e : x) sq += e * e;
  std::vector<double> r(static_cast<std::size_t>(m));
  for (std::int64_t l = 0; l < m; ++l) {
    double u = 0.0;
    for (std::int64_t d = 0; d < D; ++d)
      u += omega[static_cast<std::size_t>(l * D + d)] * x[static_cast<std::size_t>(d)];
    r[static_cast<std::size_t>(l)] =
        std::exp(u / std::pow(static_cast<double>(D), 0.25) - sq / (2.0 * std::sqrt(static_cast<double>(D)))) /
        std::sqrt(static_cast<double>(m));
  }
  return r;
}

inline std::vector<double> row_of(const TensorView& t, std::int64_t b, std::int64_t h, std::int64_t n) {
  std::vector<double> r(static_cast<std::size_t>(t.shape[3]));
  for (std::int64_t d = 0; d < t.shape[3]; ++d) r[static_cast<std::size_t>(d)] = at(t, b, h, n, d);
  return r;
}

/// What a call sees: the map, ω (favor), causal offsets per batch row and which keys count.
struct LinearSpec {
  FeatureMap map = FeatureMap::elu;
  std::vector<double> omega;  // [m, D]
  std::int64_t m = 0;
  bool causal = false;
  std::vector<std::int64_t> off;          // per batch row (causal: query i sees j <= i + off)
  std::vector<std::vector<bool>> key_ok;  // [B][Nk]
  double eps = 1e-6;
};

/// out [B, Hq, Nq, Dv] and den [B, Hq, Nq] (row-major) by the prefix-sum formulas.
struct LinearOracle {
  std::vector<double> out, den;
};

inline LinearOracle linear_oracle(const Qkv& x, const LinearSpec& s) {
  LinearOracle r;
  r.out.assign(static_cast<std::size_t>(x.B * x.Hq * x.Nq * x.Dv), 0.0);
  r.den.assign(static_cast<std::size_t>(x.B * x.Hq * x.Nq), 0.0);
  const std::int64_t G = x.Hq / x.Hkv;
  for (std::int64_t b = 0; b < x.B; ++b)
    for (std::int64_t h = 0; h < x.Hq; ++h) {
      const std::int64_t kvh = h / G;
      std::vector<std::vector<double>> S;  // [F][Dv]
      std::vector<double> z;
      std::int64_t next = 0;  // keys [0, next) are in S, z
      for (std::int64_t i = 0; i < x.Nq; ++i) {
        const std::vector<double> fq = phi_of(row_of(x.q, b, h, i), s.map, s.omega, s.m);
        if (S.empty()) {
          S.assign(fq.size(), std::vector<double>(static_cast<std::size_t>(x.Dv), 0.0));
          z.assign(fq.size(), 0.0);
        }
        const std::int64_t upto =
            s.causal ? std::clamp<std::int64_t>(i + s.off[static_cast<std::size_t>(b)] + 1, 0, x.Nk) : x.Nk;
        for (; next < upto; ++next) {
          if (!s.key_ok[static_cast<std::size_t>(b)][static_cast<std::size_t>(next)]) continue;
          const std::vector<double> fk = phi_of(row_of(x.k, b, kvh, next), s.map, s.omega, s.m);
          const std::vector<double> v = row_of(x.v, b, kvh, next);
          for (std::size_t f = 0; f < fk.size(); ++f) {
            z[f] += fk[f];
            for (std::size_t d = 0; d < v.size(); ++d) S[f][d] += fk[f] * v[d];
          }
        }
        double den = s.eps;
        for (std::size_t f = 0; f < fq.size(); ++f) den += fq[f] * z[f];
        r.den[static_cast<std::size_t>((b * x.Hq + h) * x.Nq + i)] = den;
        for (std::int64_t d = 0; d < x.Dv; ++d) {
          double num = 0.0;
          for (std::size_t f = 0; f < fq.size(); ++f) num += fq[f] * S[f][static_cast<std::size_t>(d)];
          r.out[static_cast<std::size_t>(((b * x.Hq + h) * x.Nq + i) * x.Dv + d)] = num / den;
        }
      }
    }
  return r;
}

/// Largest |out − oracle| / (1 + |oracle|) over out.
inline double max_rel_err(const TensorView& out, const LinearOracle& o, const Qkv& x) {
  double e = 0.0;
  for (std::int64_t b = 0; b < x.B; ++b)
    for (std::int64_t h = 0; h < x.Hq; ++h)
      for (std::int64_t i = 0; i < x.Nq; ++i)
        for (std::int64_t d = 0; d < x.Dv; ++d) {
          const double ref = o.out[static_cast<std::size_t>(((b * x.Hq + h) * x.Nq + i) * x.Dv + d)];
          const double diff = std::abs(at(out, b, h, i, d) - ref) / (1.0 + std::abs(ref));
          e = std::isnan(diff) ? kInf : std::max(e, diff);
        }
  return e;
}

/// The cpu path's causal forms (src/linear/cpu.cpp): "recurrent" (the default) or "chunked", set
/// through ATTN_LINEAR_CAUSAL for the scope's lifetime.
inline const char* const kCausalForms[] = {"recurrent", "chunked"};
struct CausalFormScope {
  explicit CausalFormScope(const std::string& form) { setenv("ATTN_LINEAR_CAUSAL", form.c_str(), 1); }
  ~CausalFormScope() { unsetenv("ATTN_LINEAR_CAUSAL"); }
  CausalFormScope(const CausalFormScope&) = delete;
  CausalFormScope& operator=(const CausalFormScope&) = delete;
};

/// A FAVOR+ projection [m, D] (f64) drawn by the library, and its values.
struct Projection {
  GuardedTensor t;
  std::vector<double> values;
};
inline Projection make_projection(std::int64_t m, std::int64_t D, std::uint64_t seed) {
  Projection p;
  p.t = make_tensor(DType::f64, {m, D});
  favor_projection(p.t.view, seed);
  for (std::int64_t l = 0; l < m; ++l)
    for (std::int64_t d = 0; d < D; ++d) p.values.push_back(at(p.t.view, l, d));
  return p;
}

/// The spec of params for q, k, v shapes (offsets per alignment and key lengths / padding).
inline LinearSpec spec_of(const Qkv& x, const LinearAttentionParams& params, const Projection* proj = nullptr) {
  LinearSpec s;
  s.map = params.feature_map;
  if (proj) {
    s.omega = proj->values;
    s.m = params.projection.shape[0];
  }
  s.causal = params.mask.causal;
  s.eps = params.eps;
  for (std::int64_t b = 0; b < x.B; ++b) {
    const std::int64_t Lk = params.mask.k_lengths.empty() ? x.Nk : params.mask.k_lengths[static_cast<std::size_t>(b)];
    s.off.push_back(params.mask.alignment == Alignment::bottom_right ? Lk - x.Nq : 0);
    std::vector<bool> ok(static_cast<std::size_t>(x.Nk));
    for (std::int64_t j = 0; j < x.Nk; ++j) {
      bool keep = j < Lk;
      if (params.key_padding_mask.defined()) keep = keep && at(params.key_padding_mask, b, j) == 0.0;
      ok[static_cast<std::size_t>(j)] = keep;
    }
    s.key_ok.push_back(ok);
  }
  return s;
}

/// dst.q = src.q; dst.k, dst.v = the key rows j of src with j % every == 0 (in order).
inline void copy_view_rows(const Qkv& src, const Qkv& dst, std::int64_t every) {
  for_each_element(src.q.view, [&](const auto& i, std::int64_t off) {
    set(dst.q.view, load_f64(src.q.view, off), i[0], i[1], i[2], i[3]);
  });
  for_each_element(src.k.view, [&](const auto& i, std::int64_t off) {
    if (i[2] % every == 0) set(dst.k.view, load_f64(src.k.view, off), i[0], i[1], i[2] / every, i[3]);
  });
  for_each_element(src.v.view, [&](const auto& i, std::int64_t off) {
    if (i[2] % every == 0) set(dst.v.view, load_f64(src.v.view, off), i[0], i[1], i[2] / every, i[3]);
  });
}

}  // namespace attn::test
