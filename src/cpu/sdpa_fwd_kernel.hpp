#pragma once
// Fast SDPA forward, one work unit (FwdTask), templated over an ISA's vector traits and compiled
// once per ISA (isa/*.cpp). FlashAttention-2 order (Dao, "FlashAttention-2", 2023) on a CPU:
//
//   Q tile [G·Br × D] (all G heads of the kv group, fp32)      O tile [G·Br × Dv] fp32, SoftmaxState per row
//   for each KV tile [Bc keys] that is not skipped:
//     pack Kᵀ [D × Bc] and V [Bc × Dv] (fp32, converted from bf16/fp16 once per tile)
//     S = Q·Kᵀ                      register-blocked micro-kernel (MR × 2W)
//     element pass (only with bias / bool / block mask / ALiBi / softcap / callbacks)
//     row pass: s·scale, per-row key range [lo, hi) as a lane mask (only on vectors that cross it),
//               row max, α = exp(m_old − m_new), P = exp(s − m_new), l = α·l + Σ P
//     dropout (Philox keep bits, the same as the reference), O = α·O + P·V   (micro-kernel MR × NW·W)
//   epilogue: out = O / l in the output dtype, lse = m + log l (fully masked rows: 0 and −inf)
//
// Masks become per-row key ranges [lo_i, hi_i) from lengths, causal and window; tiles outside every
// row's range are never touched (skip), and vectors inside every row's range run unmasked. The
// union of the ranges bounds what is read, so memory beyond lengths/windows is never loaded.
// K/V are read in place through their strides (inner stride 1): no copies for GQA/MQA or BSHD.
// Accumulation order depends only on the shape and tile sizes, so results are bitwise identical
// across runs and thread counts. probs (when asked) is written by a second pass that recomputes S
// and uses the final lse.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "core/half.hpp"
#include "core/philox.hpp"
#include "cpu/fwd_plan.hpp"
#include "variants/pipeline.hpp"

namespace attn::cpu {

/// Calls f(std::integral_constant<int, n>) for a runtime n in [1, N].
template <int N, class F>
inline void with_count(int n, F&& f) {
  if constexpr (N >= 1) {
    if (n == N) f(std::integral_constant<int, N>{});
    else with_count<N - 1>(n, std::forward<F>(f));
  }
}

template <class I>
struct FwdKernel {
  using V = typename I::V;
  static constexpr int W = I::W;
  static constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  static std::int64_t round_up(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }

  /// Converts n contiguous elements of dtype dt to fp32.
  static void to_f32(const void* src, DType dt, std::int64_t n, float* dst) {
    if (dt == DType::f32) {
      std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
      return;
    }
    const auto* h = static_cast<const std::uint16_t*>(src);
    std::int64_t c = 0;
    if (dt == DType::bf16) {
      for (; c + W <= n; c += W) I::store(dst + c, I::load_bf16(h + c));
      for (; c < n; ++c) dst[c] = core::bf16_to_f32(h[c]);
    } else {
      for (; c + W <= n; c += W) I::store(dst + c, I::load_f16(h + c));
      for (; c < n; ++c) dst[c] = core::f16_to_f32(h[c]);
    }
  }

  // S[r][c] = Σ_d Q[r][d]·Kᵀ[d][c] for R rows and 2W columns.
  template <int R>
  static void qk_micro(const float* q, std::int64_t ldq, const float* kt, std::int64_t ldk, std::int64_t D, float* s,
                       std::int64_t lds) {
    V acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = I::zero();
    for (std::int64_t d = 0; d < D; ++d) {
      const V k0 = I::load(kt + d * ldk), k1 = I::load(kt + d * ldk + W);
      for (int r = 0; r < R; ++r) {
        const V qb = I::set1(q[r * ldq + d]);
        acc[r][0] = I::fma(qb, k0, acc[r][0]);
        acc[r][1] = I::fma(qb, k1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      I::store(s + r * lds, acc[r][0]);
      I::store(s + r * lds + W, acc[r][1]);
    }
  }

  static void qk(const float* q, std::int64_t rows, std::int64_t D, const float* kt, std::int64_t bcp, float* s) {
    for (std::int64_t c0 = 0; c0 < bcp; c0 += 2 * W) {
      for (std::int64_t r0 = 0; r0 < rows; r0 += I::kQkRows) {
        const int R = static_cast<int>(std::min<std::int64_t>(I::kQkRows, rows - r0));
        with_count<I::kQkRows>(R, [&](auto n) { qk_micro<decltype(n)::value>(q + r0 * D, D, kt + c0, bcp, D, s + r0 * bcp + c0, bcp); });
      }
    }
  }

  // O[r][0..NV·W) += Σ_c P[r][c]·V[c][0..NV·W) for R rows.
  template <int R, int NV>
  static void pv_micro(const float* p, std::int64_t ldp, const float* v, std::int64_t ldv, std::int64_t bc, float* o,
                       std::int64_t ldo) {
    V acc[R][NV];
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NV; ++n) acc[r][n] = I::load(o + r * ldo + n * W);
    for (std::int64_t c = 0; c < bc; ++c) {
      V vv[NV];
      for (int n = 0; n < NV; ++n) vv[n] = I::load(v + c * ldv + n * W);
      for (int r = 0; r < R; ++r) {
        const V pb = I::set1(p[r * ldp + c]);
        for (int n = 0; n < NV; ++n) acc[r][n] = I::fma(pb, vv[n], acc[r][n]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NV; ++n) I::store(o + r * ldo + n * W, acc[r][n]);
  }

  static void pv(const float* p, std::int64_t rows, std::int64_t bcp, std::int64_t bc, const float* v, std::int64_t dvp,
                 float* o) {
    for (std::int64_t d0 = 0; d0 < dvp; d0 += I::kPvVecs * W) {
      const int NV = static_cast<int>(std::min<std::int64_t>(I::kPvVecs, (dvp - d0) / W));
      for (std::int64_t r0 = 0; r0 < rows; r0 += I::kPvRows) {
        const int R = static_cast<int>(std::min<std::int64_t>(I::kPvRows, rows - r0));
        with_count<I::kPvRows>(R, [&](auto nr) {
          with_count<I::kPvVecs>(NV, [&](auto nv) {
            pv_micro<decltype(nr)::value, decltype(nv)::value>(p + r0 * bcp, bcp, v + d0, dvp, bc, o + r0 * dvp + d0, dvp);
          });
        });
      }
    }
  }

  /// Everything one task needs to address its rows.
  struct Rows {
    const core::SdpaProblem& p;
    const FwdTask& t;
    std::int64_t tb, rows, D, Dv, dvp;
    std::int64_t head(std::int64_t r) const { return t.kvh * p.G + r / t.rows_q; }
    std::int64_t pos(std::int64_t r) const { return t.i0 + r % t.rows_q; }
  };

  static const char* row_ptr(const TensorView& x, std::int64_t tb, std::int64_t h, std::int64_t n) {
    return static_cast<const char*>(x.at(tb * x.strides[0] + h * x.strides[1] + n * x.strides[2]));
  }

  static void pack_q(const Rows& R, Workspace& ws) {
    for (std::int64_t r = 0; r < R.rows; ++r) {
      float* dst = ws.q.data() + r * R.D;
      const std::int64_t ii = r % R.t.rows_q;
      if (ws.lo[ii] >= ws.hi[ii]) {  // empty row (padding): never read its memory
        std::fill(dst, dst + R.D, 0.0f);
        continue;
      }
      to_f32(row_ptr(R.p.q, R.tb, R.head(r), R.p.tensor_row(R.t.b, R.pos(r))), R.p.q.dtype, R.D, dst);
    }
  }

  static void pack_kv(const Rows& R, std::int64_t j0, std::int64_t bc, std::int64_t bcp, Workspace& ws, bool with_v) {
    const core::SdpaProblem& p = R.p;
    float* row = ws.row.data();
    for (std::int64_t c = 0; c < bc; ++c) {
      const std::int64_t n = p.tensor_col(R.t.b, j0 + c);
      to_f32(row_ptr(p.k, R.tb, R.t.kvh, n), p.k.dtype, R.D, row);
      for (std::int64_t d = 0; d < R.D; ++d) ws.kt[d * bcp + c] = row[d];
      if (with_v) {
        float* vrow = ws.v.data() + c * R.dvp;
        to_f32(row_ptr(p.v, R.tb, R.t.kvh, n), p.v.dtype, R.Dv, vrow);
        std::fill(vrow + R.Dv, vrow + R.dvp, 0.0f);
      }
    }
    for (std::int64_t d = 0; d < R.D; ++d) std::fill(ws.kt.data() + d * bcp + bc, ws.kt.data() + (d + 1) * bcp, 0.0f);
  }

  /// Bias, bool/block mask, ALiBi, softcap, callbacks: per element, in the reference's pipeline.
  static void element_pass(const Rows& R, std::int64_t j0, std::int64_t bc, std::int64_t bcp, Workspace& ws) {
    for (std::int64_t r = 0; r < R.rows; ++r) {
      const std::int64_t ii = r % R.t.rows_q, h = R.head(r), i = R.pos(r);
      const std::int64_t lo = std::max<std::int64_t>(ws.lo[ii] - j0, 0), hi = std::min<std::int64_t>(ws.hi[ii] - j0, bc);
      float* s = ws.s.data() + r * bcp;
      for (std::int64_t c = lo; c < hi; ++c) {
        const std::int64_t j = j0 + c;
        s[c] = variants::visible_extra(R.p, R.t.b, h, i, j)
                   ? static_cast<float>(variants::score(R.p, s[c], R.t.b, h, i, j))
                   : kNegInf;
      }
    }
  }

  /// Scales S, masks lanes outside [lo, hi) of each row to −inf; returns per-row tile maxima.
  static float scale_mask_max(float* s, std::int64_t bc, std::int64_t lo, std::int64_t hi, float scale) {
    const V vs = I::set1(scale);
    V vmax = I::set1(kNegInf);
    for (std::int64_t c0 = 0; c0 < bc; c0 += W) {
      V x = I::mul(I::load(s + c0), vs);
      if (c0 < lo || c0 + W > hi) x = I::keep_range(x, c0, lo, hi, kNegInf);
      I::store(s + c0, x);
      vmax = I::max(vmax, x);
    }
    return I::hmax(vmax);
  }

  /// P = exp(s − m) in place over [0, bc) (rounded up to W); returns Σ P.
  static float exp_sum(float* s, std::int64_t bc, float m) {
    const V vm = I::set1(m);
    V sum = I::zero();
    for (std::int64_t c0 = 0; c0 < bc; c0 += W) {
      const V e = I::exp(I::sub(I::load(s + c0), vm));
      I::store(s + c0, e);
      sum = I::add(sum, e);
    }
    return I::hsum(sum);
  }

  /// Dropout on P (after l was accumulated from the undropped P): P' = keep · P / (1 − p).
  static void dropout_row(const Rows& R, std::int64_t r, float* prow, std::int64_t j0, std::int64_t lo, std::int64_t hi) {
    const core::SdpaProblem& p = R.p;
    const float keep_scale = static_cast<float>(1.0 / (1.0 - p.dropout_p));
    const std::int64_t bh = R.t.b * p.Hq + R.head(r), i = R.pos(r);
    core::PhiloxBlock words{};
    std::int64_t block = -1;
    for (std::int64_t c = lo; c < hi; ++c) {
      const std::int64_t j = j0 + c;
      if ((j >> 2) != block) {
        block = j >> 2;
        words = core::dropout_words(p.params->dropout_seed, p.params->dropout_offset, bh, i, j);
      }
      prow[c] = words[static_cast<std::size_t>(j & 3)] >= p.dropout_threshold ? prow[c] * keep_scale : 0.0f;
    }
  }

  /// Key ranges per query position and the union [kv_begin, kv_end) of the task.
  static std::pair<std::int64_t, std::int64_t> row_ranges(const Rows& R, Workspace& ws) {
    std::int64_t kv_begin = std::numeric_limits<std::int64_t>::max(), kv_end = 0;
    for (std::int64_t ii = 0; ii < R.t.rows_q; ++ii) {
      const variants::RowRange rr = variants::window_range(R.p, R.t.b, R.t.i0 + ii);
      ws.lo[ii] = rr.lo;
      ws.hi[ii] = rr.hi;
      if (!rr.empty()) {
        kv_begin = std::min(kv_begin, rr.lo);
        kv_end = std::max(kv_end, rr.hi);
      }
    }
    return {kv_begin, kv_end};
  }

  /// True when the block mask hides the whole tile for every head of the group.
  static bool block_mask_skips(const Rows& R, std::int64_t j0, std::int64_t bc) {
    const auto& bm = R.p.mask().block_mask;
    if (!bm) return false;
    const std::int64_t qb0 = R.t.i0 / bm->q_block, qb1 = (R.t.i0 + R.t.rows_q - 1) / bm->q_block;
    const std::int64_t kb0 = j0 / bm->k_block, kb1 = (j0 + bc - 1) / bm->k_block;
    for (std::int64_t g = 0; g < R.p.G; ++g)
      for (std::int64_t qb = qb0; qb <= qb1; ++qb)
        for (std::int64_t kb = kb0; kb <= kb1; ++kb)
          if (variants::block_mask_keep_block(*bm, R.t.b, R.t.kvh * R.p.G + g, qb, kb)) return false;
    return true;
  }

  static bool tile_visible(const Rows& R, const Workspace& ws, std::int64_t j0, std::int64_t bc) {
    bool any = false;
    for (std::int64_t ii = 0; ii < R.t.rows_q && !any; ++ii) any = ws.lo[ii] < j0 + bc && ws.hi[ii] > j0;
    return any && !block_mask_skips(R, j0, bc);
  }

  static void store_value(const TensorView& t, std::int64_t off, float x) {
    void* ptr = t.at(off);
    switch (t.dtype) {
      case DType::f32: *static_cast<float*>(ptr) = x; break;
      case DType::f64: *static_cast<double*>(ptr) = x; break;
      case DType::bf16: *static_cast<std::uint16_t*>(ptr) = core::f32_to_bf16(x); break;
      case DType::f16: *static_cast<std::uint16_t*>(ptr) = core::f32_to_f16(x); break;
      default: break;
    }
  }

  static void epilogue(const Rows& R, const FwdPlan& plan, Workspace& ws) {
    const TensorView& out = plan.o->out;
    for (std::int64_t r = 0; r < R.rows; ++r) {
      const SoftmaxState& st = ws.state[r];
      const float inv_l = st.finalize();
      const std::int64_t h = R.head(r), n = R.p.tensor_row(R.t.b, R.pos(r));
      const float* o = ws.o.data() + r * R.dvp;
      const std::int64_t base = R.tb * out.strides[0] + h * out.strides[1] + n * out.strides[2];
      if (out.dtype == DType::f32 && out.strides[3] == 1) {
        float* dst = static_cast<float*>(out.at(base));
        for (std::int64_t d = 0; d < R.Dv; ++d) dst[d] = o[d] * inv_l;
      } else {
        for (std::int64_t d = 0; d < R.Dv; ++d) store_value(out, base + d * out.strides[3], o[d] * inv_l);
      }
      if (plan.o->lse.defined()) {
        const TensorView& lse = plan.o->lse;
        *static_cast<float*>(lse.at(R.tb * lse.strides[0] + h * lse.strides[1] + n * lse.strides[2])) = st.lse();
      }
    }
  }

  /// probs = exp(s − lse) (pre-dropout) or its dropped-and-scaled form, by recomputing S per tile.
  static void write_probs(const Rows& R, const FwdPlan& plan, Workspace& ws, std::int64_t kv_begin, std::int64_t kv_end) {
    const core::SdpaProblem& p = R.p;
    const TensorView& probs = plan.o->probs;
    const bool post = p.params->probs_kind == ProbsKind::post_dropout && p.has_dropout();
    for (std::int64_t r = 0; r < R.rows; ++r) {
      const std::int64_t base = R.tb * probs.strides[0] + R.head(r) * probs.strides[1] +
                                p.tensor_row(R.t.b, R.pos(r)) * probs.strides[2];
      for (std::int64_t c = 0; c < p.Nk; ++c) store_value(probs, base + c * probs.strides[3], 0.0f);
    }
    const std::int64_t Bc = plan.Bc;
    for (std::int64_t j0 = kv_begin / Bc * Bc; j0 < kv_end; j0 += Bc) {
      const std::int64_t bc = std::min(Bc, kv_end - j0), bcp = round_up(bc, 2 * W);
      if (!tile_visible(R, ws, j0, bc)) continue;
      pack_kv(R, j0, bc, bcp, ws, false);
      qk(ws.q.data(), R.rows, R.D, ws.kt.data(), bcp, ws.s.data());
      if (plan.extras) element_pass(R, j0, bc, bcp, ws);
      for (std::int64_t r = 0; r < R.rows; ++r) {
        const std::int64_t ii = r % R.t.rows_q;
        const std::int64_t lo = std::clamp<std::int64_t>(ws.lo[ii] - j0, 0, bc), hi = std::clamp<std::int64_t>(ws.hi[ii] - j0, 0, bc);
        float* s = ws.s.data() + r * bcp;
        const float lse = ws.state[r].lse();
        if (lo >= hi || lse == kNegInf) continue;
        scale_mask_max(s, bc, lo, hi, plan.extras ? 1.0f : static_cast<float>(p.scale));
        exp_sum(s, bc, lse);
        if (post) dropout_row(R, r, s, j0, lo, hi);
        const std::int64_t base = R.tb * probs.strides[0] + R.head(r) * probs.strides[1] +
                                  p.tensor_row(R.t.b, R.pos(r)) * probs.strides[2];
        for (std::int64_t c = lo; c < hi; ++c) store_value(probs, base + p.tensor_col(R.t.b, j0 + c) * probs.strides[3], s[c]);
      }
    }
  }

  static void run(const FwdPlan& plan, const FwdTask& t, Workspace& ws) {
    const core::SdpaProblem& p = *plan.p;
    const Rows R{p, t, p.tensor_b[t.b], p.G * t.rows_q, p.D, p.Dv, round_up(p.Dv, W)};
    const float scale = plan.extras ? 1.0f : static_cast<float>(p.scale);
    auto [kv_begin, kv_end] = row_ranges(R, ws);
    for (std::int64_t r = 0; r < R.rows; ++r) ws.state[r] = SoftmaxState{};
    std::fill(ws.o.begin(), ws.o.begin() + R.rows * R.dvp, 0.0f);
    pack_q(R, ws);
    const std::int64_t Bc = plan.Bc;
    for (std::int64_t j0 = kv_begin / Bc * Bc; j0 < kv_end; j0 += Bc) {
      const std::int64_t bc = std::min(Bc, kv_end - j0), bcp = round_up(bc, 2 * W);
      if (!tile_visible(R, ws, j0, bc)) continue;  // skip: costs nothing
      pack_kv(R, j0, bc, bcp, ws, true);
      qk(ws.q.data(), R.rows, R.D, ws.kt.data(), bcp, ws.s.data());
      if (plan.extras) element_pass(R, j0, bc, bcp, ws);
      for (std::int64_t r = 0; r < R.rows; ++r) {
        const std::int64_t ii = r % t.rows_q;
        const std::int64_t lo = std::clamp<std::int64_t>(ws.lo[ii] - j0, 0, bc), hi = std::clamp<std::int64_t>(ws.hi[ii] - j0, 0, bc);
        float* s = ws.s.data() + r * bcp;
        float* o = ws.o.data() + r * R.dvp;
        float alpha = 1.0f;
        const float m = lo < hi ? ws.state[r].begin_tile(scale_mask_max(s, bc, lo, hi, scale), &alpha) : kNegInf;
        if (m == kNegInf) {  // nothing visible in this row yet: P row = 0
          std::fill(s, s + bc, 0.0f);
          continue;
        }
        ws.state[r].add(exp_sum(s, bc, m));
        if (alpha != 1.0f)
          for (std::int64_t d = 0; d < R.dvp; d += W) I::store(o + d, I::mul(I::load(o + d), I::set1(alpha)));
        if (p.has_dropout()) dropout_row(R, r, s, j0, lo, hi);
      }
      pv(ws.s.data(), R.rows, bcp, bc, ws.v.data(), R.dvp, ws.o.data());
    }
    epilogue(R, plan, ws);
    if (plan.o->probs.defined()) write_probs(R, plan, ws, kv_begin, kv_end);
  }
};

}  // namespace attn::cpu
