#pragma once
// Fast SDPA backward, one work unit (BwdTask), templated over an ISA's vector traits and compiled
// once per ISA (isa/*.cpp). FlashAttention-2's backward (Dao, "FlashAttention-2", 2023, Alg. 2)
// on a CPU: the outer loop runs over KV blocks, the inner loop over query tiles, and the
// [Nq, Nk] matrices are never stored. Per KV block of Bc keys (j0 .. j0 + bc):
//
//   K [bc × D], Kᵀ [D × bc], Vᵀ [Dv × bc] converted to fp32 once; dK, dV accumulators zeroed
//   for each query head h of the kv group, each query tile i0 .. i0 + br that sees the block:
//     S   = Q·Kᵀ                      (then scale, or the element pass: variants/pipeline.hpp)
//     P   = exp(S − lse_i)            on each row's visible keys [lo_i, hi_i), else 0
//     P'  = Z∘P                       Z = keep/(1 − p): the forward's Philox bits, replayed
//     dV += P'ᵀ·dO
//     dP  = dO·Vᵀ
//     dS  = P∘(Z∘dP − Δ_i)∘F          Δ_i = rowsum(dO_i∘O_i) (driver), F = d score / d(scale·dot)
//                                     (dbias: P∘(Z∘dP − Δ_i)∘score_mod', into the fp32 gather)
//     dK += dSᵀ·Q                     (× scale at the end)
//     dQ += dS·K                      into the task's chunk buffer (× scale in the driver)
//   store dK·scale and dV in their dtypes and strides
//
// Every product is one register-blocked micro-kernel C[MR × NV·W] += A(m, k)·B[k][NV·W]: A is read
// by broadcast through two strides (so Pᵀ and dSᵀ need no transpose), B row-major. fp32 Q and dO
// rows are read in place when D and Dv are multiples of 16 and every row of the tile sees a key of
// the block; otherwise they are converted into the workspace, where rows that see no key of the
// block, and rows with lse = −inf (fully masked), are zeroed, so NaN in memory the forward never
// read (padding, hidden keys) cannot leak into the products. Tiles that no row of the query tile
// sees (lengths, causal, window) or that a variant hides (block mask) are skipped. The loop order
// and the chunks depend on the shape only: the results are bitwise identical for any thread count.
// dbias: each tile writes its score gradients into a full-size fp32 gather (every element has one
// owner), which the driver reduces over the bias's broadcast axes in index order.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/float_io.hpp"
#include "core/half.hpp"
#include "core/philox.hpp"
#include "cpu/bwd_plan.hpp"
#include "cpu/convert.hpp"
#include "cpu/isa/vec_traits.hpp"
#include "variants/pipeline.hpp"

namespace attn::cpu {

template <isa::VecTraits I>
struct BwdKernel {
  using V = typename I::V;
  static constexpr int W = I::W;
  static constexpr int kMr = I::kPvRows;  // micro-tile rows
  static constexpr int kNv = I::kPvVecs;  // micro-tile width in vectors
  static constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  /// Calls f(std::integral_constant<int, n>) for a runtime n in [1, N].
  template <int N, class F>
  static void with_count(int n, F&& f) {
    if constexpr (N >= 1) {
      if (n == N) f(std::integral_constant<int, N>{});
      else with_count<N - 1>(n, std::forward<F>(f));
    }
  }

  // C[m][0 .. NV·W) (+)= Σ_k A(m, k)·B[k][0 .. NV·W) for M rows; A(m, k) = a[m·sam + k·sak].
  template <int M, int NV>
  static void micro(const float* a, std::int64_t sam, std::int64_t sak, const float* b, std::int64_t ldb, std::int64_t K,
                    float* c, std::int64_t ldc, bool accumulate) {
    V acc[M][NV];
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < NV; ++n) acc[m][n] = accumulate ? I::load(c + m * ldc + n * W) : I::zero();
    for (std::int64_t k = 0; k < K; ++k) {
      V bv[NV];
      for (int n = 0; n < NV; ++n) bv[n] = I::load(b + k * ldb + n * W);
      for (int m = 0; m < M; ++m) {
        const V av = I::set1(a[m * sam + k * sak]);
        for (int n = 0; n < NV; ++n) acc[m][n] = I::fma(av, bv[n], acc[m][n]);
      }
    }
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < NV; ++n) I::store(c + m * ldc + n * W, acc[m][n]);
  }

  /// C [M × Np] (+)= A [M × K] · B [K × Np]; Np a multiple of W.
  static void gemm(std::int64_t M, std::int64_t Np, std::int64_t K, const float* a, std::int64_t sam, std::int64_t sak,
                   const float* b, std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate) {
    for (std::int64_t n0 = 0; n0 < Np; n0 += kNv * W) {
      const int nv = static_cast<int>(std::min<std::int64_t>(kNv, (Np - n0) / W));
      for (std::int64_t m0 = 0; m0 < M; m0 += kMr) {
        const int mr = static_cast<int>(std::min<std::int64_t>(kMr, M - m0));
        with_count<kMr>(mr, [&](auto cm) {
          with_count<kNv>(nv, [&](auto cn) {
            micro<decltype(cm)::value, decltype(cn)::value>(a + m0 * sam, sam, sak, b + n0, ldb, K, c + m0 * ldc + n0, ldc,
                                                            accumulate);
          });
        });
      }
    }
  }


  /// Row (tb, h, n) of a rank-4 view as n_el fp32 values, then zeros up to `pitch`.
  static void load_row(const TensorView& t, std::int64_t tb, std::int64_t h, std::int64_t n, std::int64_t n_el,
                       std::int64_t pitch, float* dst) {
    const std::int64_t base = tb * t.strides[0] + h * t.strides[1] + n * t.strides[2], cs = t.strides[3];
    if (cs == 1 && is_input_dtype(t.dtype))
      Convert<I>::to_f32(t.at(base), t.dtype, n_el, dst);
    else
      for (std::int64_t c = 0; c < n_el; ++c) dst[c] = core::load_float(t.data, t.dtype, base + c * cs);
    std::fill(dst + n_el, dst + pitch, 0.0f);
  }

  static void store_row(const TensorView& t, std::int64_t tb, std::int64_t h, std::int64_t n, std::int64_t n_el,
                        const float* src, float mul) {
    const std::int64_t base = tb * t.strides[0] + h * t.strides[1] + n * t.strides[2], cs = t.strides[3];
    Convert<I>::from_f32(src, 1, mul, n_el, t.dtype, t.at(base), cs);
  }

  /// Where one tile lives: batch row, query head, first query position and key, sizes.
  struct Tile {
    std::int64_t b, tb, h, i0, br, j0, bc, bcp;
  };

  /// The score pipeline on the raw dots of row r (visible columns only), from the one list of
  /// variants (variants/pipeline.hpp), and F = d score / d(scale·dot) (softcap's 1 − tanh²,
  /// score_mod's grad; 0 where hidden). Callbacks run the fp64 pipeline per element, the rest fp32.
  static void element_pass(const BwdPlan& plan, const Tile& t, std::int64_t r, BwdWorkspace& ws) {
    const core::SdpaProblem& p = plan.a->p;
    const std::int64_t lo = ws.lo[r], hi = ws.hi[r], i = t.i0 + r;
    float* s = ws.s.data() + r * t.bcp;
    float* f = ws.f.data() + r * t.bcp;
    const float cap = static_cast<float>(p.mask().softcap);
    if (variants::has_callback(p) || cap > 0.0f || !plan.vector_terms) std::fill(f, f + t.bcp, 0.0f);
    if (variants::has_callback(p)) {
      float* fb = plan.dbias_gather && p.mask().score_mod ? ws.fb.data() + r * t.bcp : nullptr;
      if (fb) std::fill(fb, fb + t.bcp, 0.0f);  // d score / d bias (the bias enters before score_mod)
      float unused = 0.0f;
      for (std::int64_t c = lo; c < hi; ++c) s[c] = variants::element_fp64(p, s[c], t.b, t.h, i, t.j0 + c, f + c, fb ? fb + c : &unused);
      return;
    }
    float* add = ws.add.data();
    if (cap > 0.0f || !plan.vector_terms) {
      variants::row_terms({p, t.b, t.h, i, t.j0}, lo, hi, add);
      variants::finish_row(s, 1, add, lo, hi, static_cast<float>(p.scale), cap, f);
      return;
    }
    // Additive terms and keep rules only: finish_row's form in vectors over the whole padded row,
    // 0 terms outside [lo, hi) (probs() zeroes P there): s = scale·s + add (−inf where add is
    // −inf), F = 1 on the visible keys.
    std::fill(add, add + lo, 0.0f);
    std::fill(add + hi, add + t.bcp, 0.0f);
    variants::row_terms({p, t.b, t.h, i, t.j0}, lo, hi, add);
    const V vs = I::set1(static_cast<float>(p.scale)), neg_inf = I::set1(kNegInf), one = I::set1(1.0f);
    for (std::int64_t c = 0; c < t.bcp; c += W) {
      const V a = I::load(add + c);
      I::store(s + c, I::if_neg_inf(a, neg_inf, I::fma(I::load(s + c), vs, a)));
      const V in = (c >= lo && c + W <= hi) ? one : I::keep_range(one, c, lo, hi, 0.0f);
      I::store(f + c, I::if_neg_inf(a, I::zero(), in));
    }
  }

  /// Dropout factors Z of row r: 1/(1 − p) where the forward kept the element, else 0.
  static void dropout_row(const core::SdpaProblem& p, const Tile& t, std::int64_t r, float* z) {
    const float keep_scale = static_cast<float>(1.0 / (1.0 - p.dropout_p));
    const std::int64_t bh = t.b * p.Hq + t.h, i = t.i0 + r;
    std::int64_t block = -1;
    core::PhiloxBlock words{};
    for (std::int64_t c = 0; c < t.bcp; ++c) z[c] = 0.0f;
    for (std::int64_t c = 0; c < t.bc; ++c) {
      const std::int64_t j = t.j0 + c;
      if ((j >> 2) != block) {
        block = j >> 2;
        words = core::dropout_words(p.params->dropout_seed, p.params->dropout_offset, bh, i, j);
      }
      z[c] = words[static_cast<std::size_t>(j & 3)] >= p.dropout_threshold ? keep_scale : 0.0f;
    }
  }

  /// Where the tile's Q and dO rows are read from: the tensors themselves, or the workspace copies.
  struct Rows {
    const float* q;
    std::int64_t ldq;
    const float* dout;
    std::int64_t lddo;
  };

  /// True when an fp32 view's rows can be read in place as a gemm operand of width `pitch`.
  static bool in_place(const TensorView& t, std::int64_t n_el, std::int64_t pitch) {
    return t.dtype == DType::f32 && t.strides[3] == 1 && n_el == pitch;
  }

  /// Per-row ranges, lse, Δ and the Q and dO rows of one query tile; false when no row sees a key.
  /// fp32 rows are read in place when every row of the tile sees a key of the block; otherwise
  /// they are converted into the workspace, where rows that see none are zeroed (so NaN in rows
  /// the forward never used cannot reach dK or dV through a 0 · NaN product).
  static bool load_rows(const BwdPlan& plan, const Tile& t, BwdWorkspace& ws, Rows& rows) {
    const core::BackwardArgs& a = *plan.a;
    const core::SdpaProblem& p = a.p;
    std::int64_t live = 0;
    for (std::int64_t r = 0; r < t.br; ++r) {
      const std::int64_t i = t.i0 + r, n = p.tensor_row(t.b, i);
      const variants::RowRange rr = variants::window_range(p, t.b, i);
      std::int64_t lo = std::clamp<std::int64_t>(rr.lo - t.j0, 0, t.bc), hi = std::clamp<std::int64_t>(rr.hi - t.j0, 0, t.bc);
      const float lse = *static_cast<const float*>(a.lse.at(t.tb * a.lse.strides[0] + t.h * a.lse.strides[1] + n * a.lse.strides[2]));
      if (lse == kNegInf || lo >= hi) lo = hi = 0;  // fully masked row, or no key of this block
      ws.lo[r] = lo;
      ws.hi[r] = hi;
      ws.lse[r] = lse;
      ws.delta[r] = plan.delta[plan.row_id(p, t.tb, t.h, n)];
      live += lo < hi;
    }
    if (live == 0) return false;
    const std::int64_t n0 = p.tensor_row(t.b, t.i0);
    const bool q_in_place = live == t.br && in_place(p.q, p.D, plan.Dp);
    const bool do_in_place = live == t.br && in_place(a.dout, p.Dv, plan.Dvp);
    rows.q = q_in_place
                 ? static_cast<const float*>(p.q.at(t.tb * p.q.strides[0] + t.h * p.q.strides[1] + n0 * p.q.strides[2]))
                 : ws.q.data();
    rows.ldq = q_in_place ? p.q.strides[2] : plan.Dp;
    rows.dout = do_in_place ? static_cast<const float*>(a.dout.at(t.tb * a.dout.strides[0] + t.h * a.dout.strides[1] +
                                                                  n0 * a.dout.strides[2]))
                            : ws.dout.data();
    rows.lddo = do_in_place ? a.dout.strides[2] : plan.Dvp;
    for (std::int64_t r = 0; r < t.br; ++r) {
      const std::int64_t n = n0 + r;
      const bool row_live = ws.lo[r] < ws.hi[r];
      if (!q_in_place) {
        if (row_live)
          load_row(p.q, t.tb, t.h, n, p.D, plan.Dp, ws.q.data() + r * plan.Dp);
        else
          std::fill(ws.q.begin() + r * plan.Dp, ws.q.begin() + (r + 1) * plan.Dp, 0.0f);
      }
      if (!do_in_place) {
        if (row_live)
          load_row(a.dout, t.tb, t.h, n, p.Dv, plan.Dvp, ws.dout.data() + r * plan.Dvp);
        else
          std::fill(ws.dout.begin() + r * plan.Dvp, ws.dout.begin() + (r + 1) * plan.Dvp, 0.0f);
      }
    }
    return true;
  }

  /// P = exp(S − lse) on each row's visible keys (scale applied here unless the element pass did).
  static void probs(const BwdPlan& plan, const Tile& t, BwdWorkspace& ws) {
    const V vscale = I::set1(plan.extras ? 1.0f : static_cast<float>(plan.a->p.scale));
    for (std::int64_t r = 0; r < t.br; ++r) {
      float* s = ws.s.data() + r * t.bcp;
      const std::int64_t lo = ws.lo[r], hi = ws.hi[r];
      if (lo >= hi) {
        std::fill(s, s + t.bcp, 0.0f);
        continue;
      }
      const V lse = I::set1(ws.lse[r]);
      for (std::int64_t c = 0; c < t.bcp; c += W) {
        const V e = I::exp(I::sub(I::mul(I::load(s + c), vscale), lse));
        I::store(s + c, (c >= lo && c + W <= hi) ? e : I::keep_range(e, c, lo, hi, 0.0f));
      }
    }
  }

  /// dS = P∘(Z∘dP − Δ)∘F in place of dP; with dbias, also P∘(Z∘dP − Δ)(∘score_mod') into the
  /// gather row of each tile row.
  static void grad_scores(const BwdPlan& plan, const Tile& t, BwdWorkspace& ws, bool dropout) {
    const core::SdpaProblem& p = plan.a->p;
    const bool factor = plan.extras;
    const float* fb_all = plan.dbias_gather && p.mask().score_mod ? ws.fb.data() : nullptr;
    for (std::int64_t r = 0; r < t.br; ++r) {
      float* dp = ws.dp.data() + r * t.bcp;
      const float* pr = ws.s.data() + r * t.bcp;
      const float* z = ws.z.data() + r * t.bcp;
      const float* f = ws.f.data() + r * t.bcp;
      if (ws.lo[r] >= ws.hi[r]) {
        std::fill(dp, dp + t.bcp, 0.0f);
        continue;  // the gather is zero-initialised
      }
      float* gather = plan.dbias_gather
                          ? plan.dbias_gather +
                                plan.gather_offset(p, t.tb, t.h, p.tensor_row(t.b, t.i0 + r), p.tensor_col(t.b, t.j0))
                          : nullptr;
      const V delta = I::set1(ws.delta[r]);
      for (std::int64_t c = 0; c < t.bcp; c += W) {
        V d = I::load(dp + c);
        if (dropout) d = I::mul(d, I::load(z + c));
        d = I::mul(I::load(pr + c), I::sub(d, delta));
        // P is exactly 0 off the visible keys; select, so that a NaN dP there cannot leak.
        if (!(c >= ws.lo[r] && c + W <= ws.hi[r])) d = I::keep_range(d, c, ws.lo[r], ws.hi[r], 0.0f);
        if (gather) {
          const V db = fb_all ? I::mul(d, I::load(fb_all + r * t.bcp + c)) : d;
          if (c + W <= t.bc) {
            I::store(gather + c, db);
          } else {
            alignas(64) float tmp[W];
            I::store(tmp, db);
            for (std::int64_t e = c; e < t.bc; ++e) gather[e] = tmp[e - c];
          }
        }
        if (factor) d = I::mul(d, I::load(f + c));
        I::store(dp + c, d);
      }
    }
  }

  /// Which products a tile runs: all five (dQ into chunk partials), dV and dK only (first pass of
  /// the second-pass scheme), or dQ only (its second pass, which recomputes S, P and dP).
  enum class Products { all, kv, q };

  static void tile(const BwdPlan& plan, const Tile& t, BwdWorkspace& ws, float* dq, Products what = Products::all) {
    const core::SdpaProblem& p = plan.a->p;
    Rows rows{};
    if (!load_rows(plan, t, ws, rows)) return;
    const std::int64_t ld = t.bcp;
    gemm(t.br, ld, p.D, rows.q, rows.ldq, 1, ws.kt.data(), ld, ws.s.data(), ld, false);  // S = Q·Kᵀ
    if (plan.extras)
      for (std::int64_t r = 0; r < t.br; ++r)
        if (ws.lo[r] < ws.hi[r]) element_pass(plan, t, r, ws);
    probs(plan, t, ws);  // S -> P
    const float* pd = ws.s.data();
    if (p.has_dropout()) {
      for (std::int64_t r = 0; r < t.br; ++r) {
        dropout_row(p, t, r, ws.z.data() + r * ld);
        for (std::int64_t c = 0; c < ld; c += W)
          I::store(ws.pd.data() + r * ld + c, I::mul(I::load(ws.s.data() + r * ld + c), I::load(ws.z.data() + r * ld + c)));
      }
      pd = ws.pd.data();
    }
    if (what != Products::q)
      gemm(t.bc, plan.Dvp, t.br, pd, 1, ld, rows.dout, rows.lddo, ws.dv.data(), plan.Dvp, true);  // dV += P'ᵀ·dO
    gemm(t.br, ld, p.Dv, rows.dout, rows.lddo, 1, ws.vt.data(), ld, ws.dp.data(), ld, false);     // dP = dO·Vᵀ
    grad_scores(plan, t, ws, p.has_dropout());                                                    // dS
    if (what != Products::q)
      gemm(t.bc, plan.Dp, t.br, ws.dp.data(), 1, ld, rows.q, rows.ldq, ws.dk.data(), plan.Dp, true);  // dK += dSᵀ·Q
    if (what != Products::kv)
      gemm(t.br, plan.Dp, t.bc, ws.dp.data(), ld, 1, ws.k.data(), plan.Dp, dq, plan.Dp, true);  // dQ += dS·K
  }

  /// K, Kᵀ, Vᵀ of keys j0 .. j0 + bc in fp32, zero-padded.
  static void load_kv(const BwdPlan& plan, const Tile& t, std::int64_t kvh, BwdWorkspace& ws) {
    const core::SdpaProblem& p = plan.a->p;
    std::fill(ws.kt.begin(), ws.kt.begin() + p.D * t.bcp, 0.0f);
    std::fill(ws.vt.begin(), ws.vt.begin() + p.Dv * t.bcp, 0.0f);
    float* row = ws.row.data();
    for (std::int64_t c = 0; c < t.bc; ++c) {
      const std::int64_t n = p.tensor_col(t.b, t.j0 + c);
      float* k = ws.k.data() + c * plan.Dp;
      load_row(p.k, t.tb, kvh, n, p.D, plan.Dp, k);
      for (std::int64_t d = 0; d < p.D; ++d) ws.kt[d * t.bcp + c] = k[d];
      load_row(p.v, t.tb, kvh, n, p.Dv, plan.Dvp, row);
      for (std::int64_t d = 0; d < p.Dv; ++d) ws.vt[d * t.bcp + c] = row[d];
    }
  }

  /// True when a variant hides the whole tile (the query tile's window ranges are the caller's).
  static bool variant_skips(const core::SdpaProblem& p, const Tile& t) {
    return variants::classify_tile(p, {t.b, t.h, t.h + 1, t.i0, t.i0 + t.br, t.j0, t.j0 + t.bc}) == variants::TileClass::skip;
  }

  /// Second pass of the second-pass dQ scheme: query tile [q0, q0 + Br) of every head of the kv
  /// group against each KV block it sees, in block order, dQ accumulated in the task's own rows.
  static void run_dq(const BwdPlan& plan, const BwdTask& task, BwdWorkspace& ws) {
    const core::SdpaProblem& p = plan.a->p;
    const std::int64_t b = task.b, tb = p.tensor_b[b], Lk = p.Lk[b];
    const std::int64_t i0 = task.q0, br = std::min(plan.Br, p.Lq[b] - i0);
    const auto first = variants::window_range(p, b, i0), last = variants::window_range(p, b, i0 + br - 1);
    for (std::int64_t j0 = first.lo / plan.Bc * plan.Bc; j0 < std::min(last.hi, Lk); j0 += plan.Bc) {
      const std::int64_t bc = std::min(plan.Bc, Lk - j0);
      Tile t{b, tb, 0, i0, br, j0, bc, (bc + W - 1) / W * W};
      bool loaded = false;
      for (std::int64_t h = task.kvh * p.G; h < (task.kvh + 1) * p.G; ++h) {
        t.h = h;
        if (variant_skips(p, t)) continue;
        if (!loaded) load_kv(plan, t, task.kvh, ws);
        loaded = true;
        tile(plan, t, ws, plan.dq_acc + plan.row_id(p, tb, h, p.tensor_row(b, i0)) * plan.Dp, Products::q);
      }
    }
  }

  /// The driver's row pass before the tasks: Δ_i = Σ_d dO_id·O_id (− dlse_i when given) in fp32
  /// for every query row of sequence b, head h, into delta[row_id]. fp32 rows of width Dvp are read
  /// in place, others converted into a zero-padded row; W-lane products summed by I::hsum.
  static void delta_rows(const BwdPlan& plan, std::int64_t b, std::int64_t h, float* delta) {
    const core::BackwardArgs& a = *plan.a;
    const core::SdpaProblem& p = a.p;
    const std::int64_t tb = p.tensor_b[b], Dvp = plan.Dvp;
    const bool o_direct = in_place(a.out, p.Dv, Dvp), d_direct = in_place(a.dout, p.Dv, Dvp);
    std::vector<float> buf(static_cast<std::size_t>((o_direct ? 0 : Dvp) + (d_direct ? 0 : Dvp)));
    float* o_row = buf.data();
    float* d_row = buf.data() + (o_direct ? 0 : Dvp);
    for (std::int64_t i = 0; i < p.Lq[b]; ++i) {
      const std::int64_t n = p.tensor_row(b, i);
      const float* o = o_row;
      const float* d = d_row;
      if (o_direct)
        o = static_cast<const float*>(a.out.at(tb * a.out.strides[0] + h * a.out.strides[1] + n * a.out.strides[2]));
      else
        load_row(a.out, tb, h, n, p.Dv, Dvp, o_row);
      if (d_direct)
        d = static_cast<const float*>(a.dout.at(tb * a.dout.strides[0] + h * a.dout.strides[1] + n * a.dout.strides[2]));
      else
        load_row(a.dout, tb, h, n, p.Dv, Dvp, d_row);
      V acc = I::zero();
      for (std::int64_t c = 0; c < Dvp; c += W) acc = I::fma(I::load(d + c), I::load(o + c), acc);
      float sum = I::hsum(acc);
      // d lse_i / d s_ij = P_ij, so a gradient of lse enters as dS_ij += dlse_i·P_ij: Δ_i −= dlse_i.
      if (a.dlse.defined())
        sum -= core::load_float(a.dlse.data, a.dlse.dtype,
                                tb * a.dlse.strides[0] + h * a.dlse.strides[1] + n * a.dlse.strides[2]);
      delta[plan.row_id(p, tb, h, n)] = sum;
    }
  }

  /// The driver's row pass after the tasks: dq = scale · Σ_chunks partial (0 + chunk 0 + chunk 1 +
  /// ..., in chunk order) for rows [row0, row1) of the [Bt·Hq·Nq] row index, every row (rows no
  /// sequence reaches get 0), written in dq's dtype and strides.
  static void dq_rows(const BwdPlan& plan, std::int64_t row0, std::int64_t row1) {
    const core::SdpaProblem& p = plan.a->p;
    const TensorView& dq = plan.a->g.dq;
    const std::int64_t stride = plan.chunk_stride(p), Dp = plan.Dp;
    std::vector<float> sum(static_cast<std::size_t>(Dp));
    for (std::int64_t row = row0; row < row1; ++row) {
      const std::int64_t tb = row / (p.Hq * p.Nq), h = row / p.Nq % p.Hq, n = row % p.Nq;
      const float* part = plan.dq_acc + row * Dp;
      for (std::int64_t c = 0; c < Dp; c += W) {
        V s = I::zero();
        for (std::int64_t ch = 0; ch < plan.chunks; ++ch) s = I::add(s, I::load(part + ch * stride + c));
        I::store(sum.data() + c, s);
      }
      store_row(dq, tb, h, n, p.D, sum.data(), static_cast<float>(p.scale));
    }
  }

  static void run(const BwdPlan& plan, const BwdTask& task, BwdWorkspace& ws) {
    if (task.q_pass) {
      run_dq(plan, task, ws);
      return;
    }
    const core::BackwardArgs& a = *plan.a;
    const core::SdpaProblem& p = a.p;
    const std::int64_t b = task.b, tb = p.tensor_b[b], Lq = p.Lq[b], Lk = p.Lk[b];
    const Products what = plan.dq_second_pass ? Products::kv : Products::all;
    float* dq_chunk = plan.dq_acc + task.chunk * plan.chunk_stride(p);
    for (std::int64_t kb = task.kb0; kb < task.kb1; ++kb) {
      const std::int64_t j0 = kb * plan.Bc, bc = std::min(plan.Bc, Lk - j0);
      Tile t{b, tb, 0, 0, 0, j0, bc, (bc + W - 1) / W * W};
      load_kv(plan, t, task.kvh, ws);
      std::fill(ws.dk.begin(), ws.dk.begin() + bc * plan.Dp, 0.0f);
      std::fill(ws.dv.begin(), ws.dv.begin() + bc * plan.Dvp, 0.0f);
      for (std::int64_t h = task.kvh * p.G; h < (task.kvh + 1) * p.G; ++h) {
        t.h = h;
        for (std::int64_t i0 = 0; i0 < Lq; i0 += plan.Br) {
          t.i0 = i0;
          t.br = std::min(plan.Br, Lq - i0);
          // Row ranges grow with i: the tile's union is [lo(first row), hi(last row)).
          const auto first = variants::window_range(p, b, i0), last = variants::window_range(p, b, i0 + t.br - 1);
          if (last.hi <= j0) continue;
          if (first.lo >= j0 + bc) break;
          if (variant_skips(p, t)) continue;
          tile(plan, t, ws, dq_chunk + plan.row_id(p, tb, h, p.tensor_row(b, i0)) * plan.Dp, what);
        }
      }
      for (std::int64_t c = 0; c < bc; ++c) {
        const std::int64_t n = p.tensor_col(b, j0 + c);
        store_row(a.g.dk, tb, task.kvh, n, p.D, ws.dk.data() + c * plan.Dp, static_cast<float>(p.scale));
        store_row(a.g.dv, tb, task.kvh, n, p.Dv, ws.dv.data() + c * plan.Dvp, 1.0f);
      }
    }
  }
};

}  // namespace attn::cpu
