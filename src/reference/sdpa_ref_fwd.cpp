// Reference SDPA forward (fp64 accumulation, any strides, any dtype). Per (b, h, i):
//   1. scores  s_j = pipeline(q_i·k_j)           S: [Nq, Nk], -inf where not visible
//   2. softmax P_j = exp(s_j - m) / l,  lse = m + log l   (fully masked row: P = 0, lse = -inf)
//   3. dropout P'_j = keep_j · P_j / (1 - p)     (Philox keep rule, docs/contract.md §7)
//   4. output  o = Σ_j P'_j v_j                   (terms with s_j = -inf are skipped)
// Written for clarity in the style of llm.c's attention_forward; never fast.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <omp.h>

#include "core/philox.hpp"
#include "reference/sdpa_ref.hpp"
#include "variants/pipeline.hpp"

namespace attn::ref {

using core::SdpaProblem;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

void score_row(const SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, double* s, double* pre_softcap,
               double* pre_mod) {
  const std::int64_t tb = p.tensor_b[b], kvh = h / p.G;
  const std::int64_t qi = p.tensor_row(b, i);
  thread_local std::vector<double> q_i;  // q row i in fp64
  q_i.resize(static_cast<std::size_t>(p.D));
  for (std::int64_t d = 0; d < p.D; ++d) q_i[d] = load_f64(p.q, p.q.offset({tb, h, qi, d}));
  for (std::int64_t j = 0; j < p.Lk[b]; ++j) {
    s[j] = kNegInf;
    if (!variants::visible(p, b, h, i, j)) continue;
    const std::int64_t k_j = p.k.offset({tb, kvh, p.tensor_col(b, j), 0});
    double dot = 0.0;
    for (std::int64_t d = 0; d < p.D; ++d) dot += q_i[d] * load_f64(p.k, k_j + d * p.k.strides[3]);
    s[j] = variants::score(p, dot, b, h, i, j, pre_softcap ? pre_softcap + j : nullptr, pre_mod ? pre_mod + j : nullptr);
  }
}

double softmax_row(double* s, std::int64_t n) {
  double m = kNegInf;
  bool has_nan = false;
  for (std::int64_t j = 0; j < n; ++j) {
    if (std::isnan(s[j])) has_nan = true;
    else if (s[j] > m) m = s[j];
  }
  if (m == kNegInf && !has_nan) {
    for (std::int64_t j = 0; j < n; ++j) s[j] = 0.0;
    return kNegInf;
  }
  double l = 0.0;
  for (std::int64_t j = 0; j < n; ++j) {
    if (s[j] == kNegInf) { s[j] = 0.0; continue; }
    s[j] = std::exp(s[j] - m);
    l += s[j];
  }
  for (std::int64_t j = 0; j < n; ++j) s[j] /= l;
  return m + std::log(l);
}

namespace {

void write_empty_row(const core::ForwardArgs& a, std::int64_t tb, std::int64_t h, std::int64_t row) {
  const SdpaProblem& p = a.p;
  for (std::int64_t d = 0; d < p.Dv; ++d) store_f64(a.o.out, a.o.out.offset({tb, h, row, d}), 0.0);
  if (a.o.lse.defined()) store_f64(a.o.lse, a.o.lse.offset({tb, h, row}), kNegInf);
  if (a.o.probs.defined())
    for (std::int64_t c = 0; c < p.Nk; ++c) store_f64(a.o.probs, a.o.probs.offset({tb, h, row, c}), 0.0);
}

void forward_row(const core::ForwardArgs& a, std::int64_t b, std::int64_t h, std::int64_t i, std::vector<double>& s,
                 std::vector<double>& acc) {
  const SdpaProblem& p = a.p;
  const std::int64_t tb = p.tensor_b[b], kvh = h / p.G, row = p.tensor_row(b, i);
  const std::int64_t Lk = p.Lk[b];
  score_row(p, b, h, i, s.data());                        // 1. scores
  const double lse = softmax_row(s.data(), Lk);           // 2. softmax (s now holds P)
  if (lse == kNegInf) return write_empty_row(a, tb, h, row);
  if (a.o.lse.defined()) store_f64(a.o.lse, a.o.lse.offset({tb, h, row}), lse);
  const double keep_scale = 1.0 / (1.0 - p.dropout_p);
  std::fill(acc.begin(), acc.end(), 0.0);
  if (a.o.probs.defined())
    for (std::int64_t c = 0; c < p.Nk; ++c) store_f64(a.o.probs, a.o.probs.offset({tb, h, row, c}), 0.0);
  for (std::int64_t j = 0; j < Lk; ++j) {
    double pj = s[j];
    const bool pre = a.o.probs.defined() && a.p.params->probs_kind == ProbsKind::pre_dropout;
    if (pre) store_f64(a.o.probs, a.o.probs.offset({tb, h, row, p.tensor_col(b, j)}), pj);
    if (p.has_dropout()) {                                // 3. dropout
      const bool keep = core::dropout_keep(p.params->dropout_seed, p.params->dropout_offset, p.dropout_threshold,
                                           b * p.Hq + h, i, j);
      pj = keep ? pj * keep_scale : 0.0;
    }
    if (a.o.probs.defined() && !pre) store_f64(a.o.probs, a.o.probs.offset({tb, h, row, p.tensor_col(b, j)}), pj);
    if (pj == 0.0) continue;                              // masked or dropped: skipped, never 0·NaN
    const std::int64_t kj = p.tensor_col(b, j);
    for (std::int64_t d = 0; d < p.Dv; ++d) acc[d] += pj * load_f64(p.v, p.v.offset({tb, kvh, kj, d}));  // 4. P·V
  }
  for (std::int64_t d = 0; d < p.Dv; ++d) store_f64(a.o.out, a.o.out.offset({tb, h, row, d}), acc[d]);
}

}  // namespace

void sdpa_forward(const core::ForwardArgs& a) {
  const SdpaProblem& p = a.p;
  // Rows that belong to no sequence (padding beyond Lq_b) get out = 0, lse = -inf.
#pragma omp parallel num_threads(p.params->num_threads > 0 ? p.params->num_threads : omp_get_max_threads())
  {
    std::vector<double> s(static_cast<std::size_t>(p.Nk) + 1), acc(static_cast<std::size_t>(p.Dv));
#pragma omp for collapse(2) schedule(dynamic)
    for (std::int64_t b = 0; b < p.B; ++b) {
      for (std::int64_t h = 0; h < p.Hq; ++h) {
        for (std::int64_t i = 0; i < p.Lq[b]; ++i) forward_row(a, b, h, i, s, acc);
        if (!p.varlen)
          for (std::int64_t i = p.Lq[b]; i < p.Nq; ++i) write_empty_row(a, b, h, i);
      }
    }
  }
}

}  // namespace attn::ref
