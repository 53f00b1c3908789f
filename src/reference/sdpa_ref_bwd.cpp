// Reference SDPA backward (fp64 accumulation, any strides, any dtype). Given dO and the forward's
// O and lse, per (b, h, i) it walks the forward's steps in reverse:
//   4'. P·V      dV_j += P'_j dO_i,   dP'_j = dO_i·v_j,   Δ_i = dO_i·O_i  (= Σ_j P_j dP_j)
//   3'. dropout  dP_j = keep_j / (1 - p) · dP'_j        (the forward's Philox keep bits, replayed)
//   2'. softmax  P_j = exp(s_j - lse_i),   dS_j = P_j (dP_j - Δ_i)   (Δ_i −= dlse_i when the
//                caller passes lse's gradient: d lse_i / d s_j = P_j)
//   1'. scores   back through score_mod (grad), bias (dbias += dS), ALiBi (constant), softcap
//                (1 - tanh²) and scale:  dq_i += scale·dT_j k_j,  dk_j += scale·dT_j q_i
// Rows with lse = -inf (fully masked, padded) and hidden keys contribute nothing: their terms are
// skipped, never multiplied by zero. One task per (b, kv head) owns its dK/dV rows and accumulates
// all G query heads of the group into them, so nothing races and the sums do not depend on the
// thread count. dbias is first gathered at full size [Bt, Hq, Nq, Nk], then reduced over the
// bias's broadcast axes in index order.

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include <omp.h>

#include "core/philox.hpp"
#include "reference/sdpa_ref.hpp"
#include "variants/softcap.hpp"

namespace attn::ref {

using core::SdpaProblem;

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Per-thread scratch: one score row and its intermediate values, one query row's vectors.
struct RowScratch {
  std::vector<double> s, pre_softcap, pre_mod, q_i, do_i, dq_i;
  explicit RowScratch(const SdpaProblem& p)
      : s(static_cast<std::size_t>(p.Nk) + 1),
        pre_softcap(s.size()),
        pre_mod(s.size()),
        q_i(static_cast<std::size_t>(p.D)),
        do_i(static_cast<std::size_t>(p.Dv)),
        dq_i(q_i.size()) {}
};

// dK/dV of one (b, kv head) task: rows j in [0, rows), fp64.
struct KvAccum {
  std::int64_t rows = 0;
  std::vector<double> dk, dv;
};

// Full-size dS (after score_mod's derivative) for dbias, or null when dbias is not wanted.
struct DbiasGather {
  double* data = nullptr;
  std::int64_t Hq = 0, Nq = 0, Nk = 0;
  double& at(std::int64_t tb, std::int64_t h, std::int64_t row, std::int64_t col) const {
    return data[((tb * Hq + h) * Nq + row) * Nk + col];
  }
};

void backward_row(const core::BackwardArgs& a, std::int64_t b, std::int64_t h, std::int64_t i, RowScratch& r,
                  KvAccum& kv, const DbiasGather& dbias) {
  const SdpaProblem& p = a.p;
  const std::int64_t tb = p.tensor_b[b], kvh = h / p.G, row = p.tensor_row(b, i), Lk = p.Lk[b];
  std::fill(r.dq_i.begin(), r.dq_i.end(), 0.0);
  const double lse = load_f64(a.lse, a.lse.offset({tb, h, row}));
  if (lse != kNegInf) {
    score_row(p, b, h, i, r.s.data(), r.pre_softcap.data(), r.pre_mod.data());  // 1. S again
    double delta = 0.0;                                                         // Δ_i = dO_i·O_i
    for (std::int64_t d = 0; d < p.Dv; ++d) {
      r.do_i[d] = load_f64(a.dout, a.dout.offset({tb, h, row, d}));
      delta += r.do_i[d] * load_f64(a.out, a.out.offset({tb, h, row, d}));
    }
    if (a.dlse.defined()) delta -= load_f64(a.dlse, a.dlse.offset({tb, h, row}));  // + dlse_i·P_j in dS_j
    for (std::int64_t d = 0; d < p.D; ++d) r.q_i[d] = load_f64(p.q, p.q.offset({tb, h, row, d}));
    const double keep_scale = 1.0 / (1.0 - p.dropout_p);
    const auto& sm = p.mask().score_mod;
    for (std::int64_t j = 0; j < Lk; ++j) {
      if (r.s[j] == kNegInf) continue;  // hidden: skipped
      const std::int64_t kj = p.tensor_col(b, j);
      const double pj = std::exp(r.s[j] - lse);  // 2. P from lse
      double dpj = 0.0;                          // dP'_j = dO_i·v_j
      for (std::int64_t d = 0; d < p.Dv; ++d) dpj += r.do_i[d] * load_f64(p.v, p.v.offset({tb, kvh, kj, d}));
      double drop = 1.0;  // 3. dropout replay
      if (p.has_dropout())
        drop = core::dropout_keep(p.params->dropout_seed, p.params->dropout_offset, p.dropout_threshold, b * p.Hq + h,
                                  i, j)
                   ? keep_scale
                   : 0.0;
      if (drop != 0.0)  // 4'. dV_j += P'_j dO_i
        for (std::int64_t d = 0; d < p.Dv; ++d) kv.dv[j * p.Dv + d] += pj * drop * r.do_i[d];
      double dt = pj * (drop * dpj - delta);                                       // 2'. dS_j
      if (sm) dt *= sm.grad(r.pre_mod[j], b, h, i, j);                             // 1'. score_mod
      if (dbias.data) dbias.at(tb, h, row, kj) = dt;                               //     bias: d/dbias = 1
      dt *= variants::softcap_grad(p.mask().softcap, r.pre_softcap[j]) * p.scale;  //     softcap, scale
      for (std::int64_t d = 0; d < p.D; ++d) {
        r.dq_i[d] += dt * load_f64(p.k, p.k.offset({tb, kvh, kj, d}));
        kv.dk[j * p.D + d] += dt * r.q_i[d];
      }
    }
  }
  for (std::int64_t d = 0; d < p.D; ++d) store_f64(a.g.dq, a.g.dq.offset({tb, h, row, d}), r.dq_i[d]);
}

// One (b, kv head): every query head of the group, every row; then dK/dV rows (zero beyond Lk_b).
void backward_task(const core::BackwardArgs& a, std::int64_t b, std::int64_t kvh, RowScratch& r, KvAccum& kv,
                   const DbiasGather& dbias) {
  const SdpaProblem& p = a.p;
  const std::int64_t tb = p.tensor_b[b];
  kv.rows = p.varlen ? p.Lk[b] : p.Nk;
  kv.dk.assign(static_cast<std::size_t>(kv.rows * p.D), 0.0);
  kv.dv.assign(static_cast<std::size_t>(kv.rows * p.Dv), 0.0);
  const std::int64_t q_rows = p.varlen ? p.Lq[b] : p.Nq;
  for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h) {
    for (std::int64_t i = 0; i < p.Lq[b]; ++i) backward_row(a, b, h, i, r, kv, dbias);
    for (std::int64_t i = p.Lq[b]; i < q_rows; ++i)  // padded query rows: dq = 0
      for (std::int64_t d = 0; d < p.D; ++d) store_f64(a.g.dq, a.g.dq.offset({tb, h, i, d}), 0.0);
  }
  for (std::int64_t j = 0; j < kv.rows; ++j) {
    const std::int64_t kj = p.tensor_col(b, j);
    for (std::int64_t d = 0; d < p.D; ++d) store_f64(a.g.dk, a.g.dk.offset({tb, kvh, kj, d}), kv.dk[j * p.D + d]);
    for (std::int64_t d = 0; d < p.Dv; ++d) store_f64(a.g.dv, a.g.dv.offset({tb, kvh, kj, d}), kv.dv[j * p.Dv + d]);
  }
}

// dbias[...] = Σ over the bias's broadcast axes of the gathered dS, summed in index order
// (tb, h, row, col): fixed, whatever the thread count.
void reduce_dbias(const SdpaProblem& p, const TensorView& dbias, const std::vector<double>& full) {
  const std::array<std::int64_t, 4> full_shape{p.q.shape[0], p.Hq, p.Nq, p.Nk};
  std::array<std::int64_t, 4> shape{1, 1, 1, 1}, strides{}, lin{};  // dbias as [.., .., .., ..], right-aligned
  for (int a = 0; a < dbias.rank; ++a) {
    shape[4 - dbias.rank + a] = dbias.shape[a];
    strides[4 - dbias.rank + a] = dbias.strides[a];
  }
  std::int64_t n = 1;
  for (int a = 3; a >= 0; --a) {
    lin[a] = shape[a] == 1 ? 0 : n;  // 0 on broadcast axes: they are summed over
    n *= shape[a];
  }
  std::vector<double> acc(static_cast<std::size_t>(n), 0.0);
  std::size_t e = 0;
  for (std::int64_t tb = 0; tb < full_shape[0]; ++tb)
    for (std::int64_t h = 0; h < full_shape[1]; ++h)
      for (std::int64_t row = 0; row < full_shape[2]; ++row)
        for (std::int64_t col = 0; col < full_shape[3]; ++col, ++e)
          acc[tb * lin[0] + h * lin[1] + row * lin[2] + col * lin[3]] += full[e];
  for (std::int64_t i0 = 0; i0 < shape[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < shape[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < shape[2]; ++i2)
        for (std::int64_t i3 = 0; i3 < shape[3]; ++i3)
          store_f64(dbias, i0 * strides[0] + i1 * strides[1] + i2 * strides[2] + i3 * strides[3],
                    acc[i0 * lin[0] + i1 * lin[1] + i2 * lin[2] + i3 * lin[3]]);
}

}  // namespace

void sdpa_backward(const core::BackwardArgs& a) {
  const SdpaProblem& p = a.p;
  std::vector<double> dbias_full;
  DbiasGather dbias;
  if (a.g.dbias.defined()) {
    dbias_full.assign(static_cast<std::size_t>(p.q.shape[0] * p.Hq * p.Nq * p.Nk), 0.0);  // masked: 0
    dbias = {dbias_full.data(), p.Hq, p.Nq, p.Nk};
  }
#pragma omp parallel num_threads(p.params->num_threads > 0 ? p.params->num_threads : omp_get_max_threads())
  {
    RowScratch r(p);
    KvAccum kv;
#pragma omp for collapse(2) schedule(dynamic)
    for (std::int64_t b = 0; b < p.B; ++b)
      for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh) backward_task(a, b, kvh, r, kv, dbias);
  }
  if (a.g.dbias.defined()) reduce_dbias(p, a.g.dbias, dbias_full);
}

}  // namespace attn::ref
