// The fp64 reference of linear attention (docs/linear_attention.md): plain loops, no chunking.
// Forward and backward use the quadratic masked form
//   a_ij = φ(q_i)·φ(k_j) for visible, valid keys (else 0),  num_i = Σ_j a_ij v_j,
//   den_i = Σ_j a_ij + eps,  out_i = num_i / den_i,
//   ∂L/∂a_ij = g_i·(v_j − out_i) / den_i,  dv_j = Σ_i a_ij g_i / den_i,
// and the step is the literal recurrence S += φ(k_t) v_tᵀ, z += φ(k_t), out_t = Sᵀφ(q_t) / (zᵀφ(q_t) + eps).
// Independent of the cpu path's chunked prefix sums, so each checks the other.

#include <vector>

#include "linear/backends.hpp"

namespace attn::linear {
namespace {

std::vector<double> row(const TensorView& t, std::int64_t b, std::int64_t h, std::int64_t n) {
  std::vector<double> r(static_cast<std::size_t>(t.shape[3]));
  for (std::int64_t d = 0; d < t.shape[3]; ++d) r[static_cast<std::size_t>(d)] = load_f64(t, t.offset({b, h, n, d}));
  return r;
}

// φ of every row n of t[b, h] ([N][F], row-major).
std::vector<double> feature_rows(const FeatureSpec& s, const TensorView& t, std::int64_t b, std::int64_t h) {
  const std::int64_t N = t.shape[2];
  std::vector<double> phi(static_cast<std::size_t>(N * s.F));
  for (std::int64_t n = 0; n < N; ++n) features(s, row(t, b, h, n).data(), &phi[static_cast<std::size_t>(n * s.F)]);
  return phi;
}

double dot(const double* a, const double* b, std::int64_t n) {
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// True when query i of batch row b sees key j.
bool visible(const LinearProblem& p, std::int64_t b, std::int64_t i, std::int64_t j) {
  return p.key_valid(b, j) && (!p.causal || j <= i + p.off[static_cast<std::size_t>(b)]);
}

}  // namespace

FeatureSpec feature_spec(const LinearProblem& p) {
  FeatureSpec s;
  s.map = p.map;
  s.D = p.D;
  s.F = p.F;
  if (p.map == FeatureMap::favor) {
    s.c = p.favor_scale();
    s.omega.resize(static_cast<std::size_t>(p.F * p.D));
    for (std::int64_t l = 0; l < p.F; ++l)
      for (std::int64_t d = 0; d < p.D; ++d)
        s.omega[static_cast<std::size_t>(l * p.D + d)] =
            load_f64(p.projection, l * p.projection.strides[0] + d * p.projection.strides[1]);
  }
  return s;
}

void reference_forward(const LinearProblem& p, const LinearAttentionOutputs& o) {
  const FeatureSpec s = feature_spec(p);
  const auto F = static_cast<std::size_t>(p.F);
  std::vector<double> phq(F), num(static_cast<std::size_t>(p.Dv));
  for (std::int64_t b = 0; b < p.B; ++b)
    for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh) {
      const std::vector<double> phk = feature_rows(s, p.k, b, kvh);
      for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h)
        for (std::int64_t i = 0; i < p.Nq; ++i) {
          features(s, row(p.q, b, h, i).data(), phq.data());
          std::fill(num.begin(), num.end(), 0.0);
          double den = p.eps;
          for (std::int64_t j = 0; j < p.Nk; ++j) {
            if (!visible(p, b, i, j)) continue;
            const double a = dot(phq.data(), &phk[static_cast<std::size_t>(j) * F], p.F);
            den += a;
            for (std::int64_t d = 0; d < p.Dv; ++d)
              num[static_cast<std::size_t>(d)] += a * load_f64(p.v, p.v.offset({b, kvh, j, d}));
          }
          for (std::int64_t d = 0; d < p.Dv; ++d)
            store_f64(o.out, o.out.offset({b, h, i, d}), num[static_cast<std::size_t>(d)] / den);
          if (o.den.defined()) store_f64(o.den, o.den.offset({b, h, i}), den);
        }
    }
}

void reference_backward(const LinearProblem& p, const LinearAttentionGrads& g, const TensorView& dout) {
  const FeatureSpec s = feature_spec(p);
  const auto F = static_cast<std::size_t>(p.F);
  const auto Dv = static_cast<std::size_t>(p.Dv);
  for (std::int64_t b = 0; b < p.B; ++b)
    for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh) {
      const std::vector<double> phk = feature_rows(s, p.k, b, kvh);
      std::vector<double> v(static_cast<std::size_t>(p.Nk) * Dv);
      for (std::int64_t j = 0; j < p.Nk; ++j) {
        const std::vector<double> r = row(p.v, b, kvh, j);
        std::copy(r.begin(), r.end(), v.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(j) * Dv));
      }
      std::vector<double> dphk(static_cast<std::size_t>(p.Nk) * F, 0.0), dv(static_cast<std::size_t>(p.Nk) * Dv, 0.0);
      for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h)
        for (std::int64_t i = 0; i < p.Nq; ++i) {
          const std::vector<double> q = row(p.q, b, h, i), gi = row(dout, b, h, i);
          std::vector<double> phq(F), dphq(F, 0.0), num(Dv, 0.0), a(static_cast<std::size_t>(p.Nk), 0.0);
          features(s, q.data(), phq.data());
          double den = p.eps;
          for (std::int64_t j = 0; j < p.Nk; ++j) {
            if (!visible(p, b, i, j)) continue;
            a[static_cast<std::size_t>(j)] = dot(phq.data(), &phk[static_cast<std::size_t>(j) * F], p.F);
            den += a[static_cast<std::size_t>(j)];
            for (std::size_t d = 0; d < Dv; ++d)
              num[d] += a[static_cast<std::size_t>(j)] * v[static_cast<std::size_t>(j) * Dv + d];
          }
          for (std::int64_t j = 0; j < p.Nk; ++j) {
            if (!visible(p, b, i, j)) continue;
            double da = 0.0;
            for (std::size_t d = 0; d < Dv; ++d) da += gi[d] * (v[static_cast<std::size_t>(j) * Dv + d] - num[d] / den);
            da /= den;
            for (std::size_t f = 0; f < F; ++f) {
              dphq[f] += da * phk[static_cast<std::size_t>(j) * F + f];
              dphk[static_cast<std::size_t>(j) * F + f] += da * phq[f];
            }
            for (std::size_t d = 0; d < Dv; ++d)
              dv[static_cast<std::size_t>(j) * Dv + d] += a[static_cast<std::size_t>(j)] * gi[d] / den;
          }
          std::vector<double> dq(static_cast<std::size_t>(p.D), 0.0);
          features_vjp(s, q.data(), phq.data(), dphq.data(), dq.data());
          for (std::int64_t d = 0; d < p.D; ++d)
            store_f64(g.dq, g.dq.offset({b, h, i, d}), dq[static_cast<std::size_t>(d)]);
        }
      for (std::int64_t j = 0; j < p.Nk; ++j) {
        const std::vector<double> k = row(p.k, b, kvh, j);
        std::vector<double> dk(static_cast<std::size_t>(p.D), 0.0);
        features_vjp(s, k.data(), &phk[static_cast<std::size_t>(j) * F], &dphk[static_cast<std::size_t>(j) * F],
                     dk.data());
        for (std::int64_t d = 0; d < p.D; ++d)
          store_f64(g.dk, g.dk.offset({b, kvh, j, d}), dk[static_cast<std::size_t>(d)]);
        for (std::int64_t d = 0; d < p.Dv; ++d)
          store_f64(g.dv, g.dv.offset({b, kvh, j, d}),
                    dv[static_cast<std::size_t>(j) * Dv + static_cast<std::size_t>(d)]);
      }
    }
}

void reference_step(const LinearProblem& p, const TensorView& out) {
  const FeatureSpec s = feature_spec(p);
  const auto F = static_cast<std::size_t>(p.F);
  const auto Dv = static_cast<std::size_t>(p.Dv);
  const LinearAttentionState& in = p.state_in;
  const LinearAttentionState& st = p.state_out;
  for (std::int64_t b = 0; b < p.B; ++b)
    for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh) {
      std::vector<double> S(F * Dv, 0.0), z(F, 0.0), phk(F), phq(F);
      if (in.S.defined())
        for (std::size_t f = 0; f < F; ++f) {
          const auto fi = static_cast<std::int64_t>(f);
          z[f] = load_f64(in.z, in.z.offset({b, kvh, fi}));
          for (std::size_t d = 0; d < Dv; ++d)
            S[f * Dv + d] = load_f64(in.S, in.S.offset({b, kvh, fi, static_cast<std::int64_t>(d)}));
        }
      for (std::int64_t t = 0; t < p.Nq; ++t) {
        if (p.key_valid(b, t)) {
          features(s, row(p.k, b, kvh, t).data(), phk.data());
          const std::vector<double> v = row(p.v, b, kvh, t);
          for (std::size_t f = 0; f < F; ++f) {
            z[f] += phk[f];
            for (std::size_t d = 0; d < Dv; ++d) S[f * Dv + d] += phk[f] * v[d];
          }
        }
        for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h) {
          features(s, row(p.q, b, h, t).data(), phq.data());
          const double den = dot(phq.data(), z.data(), p.F) + p.eps;
          for (std::size_t d = 0; d < Dv; ++d) {
            double num = 0.0;
            for (std::size_t f = 0; f < F; ++f) num += phq[f] * S[f * Dv + d];
            store_f64(out, out.offset({b, h, t, static_cast<std::int64_t>(d)}), num / den);
          }
        }
      }
      for (std::size_t f = 0; f < F; ++f) {
        const auto fi = static_cast<std::int64_t>(f);
        store_f64(st.z, st.z.offset({b, kvh, fi}), z[f]);
        for (std::size_t d = 0; d < Dv; ++d)
          store_f64(st.S, st.S.offset({b, kvh, fi, static_cast<std::int64_t>(d)}), S[f * Dv + d]);
      }
    }
}

}  // namespace attn::linear
