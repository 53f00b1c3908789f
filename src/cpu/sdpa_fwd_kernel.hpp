#pragma once
// Fast SDPA forward, one work unit (FwdTask), templated over an ISA's vector traits and compiled
// once per ISA (isa/*.cpp). FlashAttention-2 order (Dao, "FlashAttention-2", 2023) on a CPU:
//
//   Qᵀ tile [D × G·Br] (all G heads of the kv group, fp32, packed once per task)
//   O tile [G·Br × Dv] fp32 and one SoftmaxState per row
//   for each KV tile of Bc keys that is not skipped:
//     K, V: read in place through their strides (f32), or converted once per tile (bf16/fp16)
//     Sᵀ = K·Qᵀ  [Bc × G·Br]       micro-kernel MR keys × 2W query rows, K broadcast
//     element pass (only when a variant is in use: variants/pipeline.hpp); additive terms and keep
//       rules as a row-major tile of row terms, transposed into lanes W × W at a time (additive_pass)
//     row pass, vectorised across query rows (no horizontal reductions):
//       s·scale, key range [lo_i, hi_i) as a lane mask (only where a row's range cuts the tile),
//       m_new = max(m, max_c s), α = exp(m − m_new), P = exp(s − m_new), l = α·l + Σ_c P
//     dropout (Philox keep bits, the same as the reference), O = α·O + Pᵀᵀ·V (micro-kernel MR × NV·W)
//   epilogue: out = O / l in the output dtype, lse = m + log l (fully masked rows: 0 and −inf)
//
// Keeping S transposed puts query rows in vector lanes: the row max and row sum become vertical
// max/add over keys, K is the broadcast operand (so f32 K needs no packing at all), and only Qᵀ is
// packed, once per task. Masks become per-row key ranges [lo_i, hi_i) from lengths, causal and
// window: tiles outside every row's range are never touched (skip) and the union of the ranges
// bounds what is read, so memory beyond lengths/windows is never loaded. Accumulation order
// depends only on the shape and tile sizes, so results are bitwise identical across runs and
// thread counts. probs (when asked) is written by a second pass that recomputes S with the final lse.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "core/float_io.hpp"
#include "core/half.hpp"
#include "core/philox.hpp"
#include "cpu/amx/fwd_tiles.hpp"
#include "cpu/convert.hpp"
#include "cpu/fwd_plan.hpp"
#include "cpu/isa/vec_traits.hpp"
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

template <isa::VecTraits I>
struct FwdKernel {
  using V = typename I::V;
  static constexpr int W = I::W;
  static constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  static std::int64_t round_up(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }

  /// n contiguous input elements (f32, bf16, f16) as fp32 (cpu/convert.hpp).
  static void to_f32(const void* src, DType dt, std::int64_t n, float* dst) { Convert<I>::to_f32(src, dt, n, dst); }

  // Sᵀ[c][r0 .. r0+2W) = Σ_d K[c][d]·Qᵀ[d][r0 .. r0+2W) for C keys.
  template <int C>
  static void qk_micro(const float* k, std::int64_t ldk, const float* qt, std::int64_t ldq, std::int64_t D, float* st,
                       std::int64_t lds) {
    V acc[C][2];
    for (int c = 0; c < C; ++c) acc[c][0] = acc[c][1] = I::zero();
    for (std::int64_t d = 0; d < D; ++d) {
      const V q0 = I::load(qt + d * ldq), q1 = I::load(qt + d * ldq + W);
      for (int c = 0; c < C; ++c) {
        const V kb = I::set1(k[c * ldk + d]);
        acc[c][0] = I::fma(kb, q0, acc[c][0]);
        acc[c][1] = I::fma(kb, q1, acc[c][1]);
      }
    }
    for (int c = 0; c < C; ++c) {
      I::store(st + c * lds, acc[c][0]);
      I::store(st + c * lds + W, acc[c][1]);
    }
  }

  static void qk(const float* k, std::int64_t ldk, std::int64_t bc, const float* qt, std::int64_t rows_p, std::int64_t D,
                 float* st) {
    for (std::int64_t c0 = 0; c0 < bc; c0 += I::kQkRows) {
      const int C = static_cast<int>(std::min<std::int64_t>(I::kQkRows, bc - c0));
      for (std::int64_t r0 = 0; r0 < rows_p; r0 += 2 * W)
        with_count<I::kQkRows>(C, [&](auto n) {
          qk_micro<decltype(n)::value>(k + c0 * ldk, ldk, qt + r0, rows_p, D, st + c0 * rows_p + r0, rows_p);
        });
    }
  }

  // O[r][0 .. NV·W) += Σ_c Pᵀ[c][r]·V[c][0 .. NV·W) for R rows.
  template <int R, int NV>
  static void pv_micro(const float* pt, std::int64_t ldp, const float* v, std::int64_t ldv, std::int64_t bc, float* o,
                       std::int64_t ldo) {
    V acc[R][NV];
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NV; ++n) acc[r][n] = I::load(o + r * ldo + n * W);
    for (std::int64_t c = 0; c < bc; ++c) {
      V vv[NV];
      for (int n = 0; n < NV; ++n) vv[n] = I::load(v + c * ldv + n * W);
      for (int r = 0; r < R; ++r) {
        const V pb = I::set1(pt[c * ldp + r]);
        for (int n = 0; n < NV; ++n) acc[r][n] = I::fma(pb, vv[n], acc[r][n]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NV; ++n) I::store(o + r * ldo + n * W, acc[r][n]);
  }

  static void pv(const float* pt, std::int64_t rows, std::int64_t rows_p, std::int64_t bc, const float* v, std::int64_t ldv,
                 std::int64_t dvp, float* o) {
    for (std::int64_t d0 = 0; d0 < dvp; d0 += I::kPvVecs * W) {
      const int NV = static_cast<int>(std::min<std::int64_t>(I::kPvVecs, (dvp - d0) / W));
      for (std::int64_t r0 = 0; r0 < rows; r0 += I::kPvRows) {
        const int R = static_cast<int>(std::min<std::int64_t>(I::kPvRows, rows - r0));
        with_count<I::kPvRows>(R, [&](auto nr) {
          with_count<I::kPvVecs>(NV, [&](auto nv) {
            pv_micro<decltype(nr)::value, decltype(nv)::value>(pt + r0, rows_p, v + d0, ldv, bc, o + r0 * dvp + d0, dvp);
          });
        });
      }
    }
  }

  /// Everything one task needs to address its rows. Row r of the tile is query head
  /// kvh·G + r / rows_q at position i0 + r % rows_q.
  struct Rows {
    const core::SdpaProblem& p;
    const FwdTask& t;
    std::int64_t tb, rows, rows_p, D, Dv, dvp;
    bool pairs;  // bf16 inputs on an ISA with a bf16 pair dot (vdpbf16ps)
    bool tiles;  // bf16 inputs on a tile ISA with the call's K/Vᵀ packed (plan.pack); O holds Oᵀ
    std::int64_t head(std::int64_t r) const { return t.kvh * p.G + r / t.rows_q; }
    std::int64_t pos(std::int64_t r) const { return t.i0 + r % t.rows_q; }
  };

  static const char* row_ptr(const TensorView& x, std::int64_t tb, std::int64_t h, std::int64_t n) {
    return static_cast<const char*>(x.at(tb * x.strides[0] + h * x.strides[1] + n * x.strides[2]));
  }

  // ---- bf16 pair-dot path (ISAs with I::kBf16Dot; see isa/vec_avx512bf16.hpp) ----
  static constexpr bool kPairDot = requires { I::kBf16Dot; };
  // ---- bf16 tile path (ISAs with I::Tiles, amx/fwd_tiles.hpp): the same Qᵀ and Pᵀ pairs ----
  static constexpr bool kTiles = requires { typename I::Tiles; };

  // Sᵀ[c][r0 .. r0+2W) = Σ_pairs K[c][pair]·Qᵀ[pair][r] for C keys (Qᵀ as [D/2][rows_p][2]).
  template <int C>
  static void qk_pairs_micro(const std::uint16_t* k, std::int64_t ldk, const std::uint16_t* q2, std::int64_t rows_p,
                             std::int64_t Dh, float* st, std::int64_t lds) {
    V acc[C][2];
    for (int c = 0; c < C; ++c) acc[c][0] = acc[c][1] = I::zero();
    for (std::int64_t pr = 0; pr < Dh; ++pr) {
      const auto q0 = I::load_pairs(q2 + pr * rows_p * 2), q1 = I::load_pairs(q2 + (pr * rows_p + W) * 2);
      for (int c = 0; c < C; ++c) {
        const auto kb = I::bcast_pair(k + c * ldk + 2 * pr);
        acc[c][0] = I::dot(acc[c][0], kb, q0);
        acc[c][1] = I::dot(acc[c][1], kb, q1);
      }
    }
    for (int c = 0; c < C; ++c) {
      I::store(st + c * lds, acc[c][0]);
      I::store(st + c * lds + W, acc[c][1]);
    }
  }

  /// Qᵀ pairs [Dp/2][rows_p][2], zero beyond D (Dp: even for the pair dot, a multiple of 32 for tiles).
  static void pack_qt_pairs(const Rows& R, Workspace& ws, std::int64_t Dp) {
    std::fill(ws.q16.begin(), ws.q16.begin() + Dp * R.rows_p, std::uint16_t{0});
    for (std::int64_t r = 0; r < R.rows; ++r) {
      const std::int64_t ii = r % R.t.rows_q;
      if (ws.lo[ii] >= ws.hi[ii]) continue;
      const auto* src = reinterpret_cast<const std::uint16_t*>(row_ptr(R.p.q, R.tb, R.head(r), R.p.tensor_row(R.t.b, R.pos(r))));
      for (std::int64_t d = 0; d < R.D; ++d) ws.q16[((d / 2) * R.rows_p + r) * 2 + (d & 1)] = src[d];
    }
  }

  static void qk_pairs(const Rows& R, Workspace& ws, std::int64_t j0, std::int64_t bc) {
    const std::int64_t n0 = R.p.tensor_col(R.t.b, j0), Dp = round_up(R.D, 2);
    const std::uint16_t* k = reinterpret_cast<const std::uint16_t*>(row_ptr(R.p.k, R.tb, R.t.kvh, n0));
    std::int64_t ldk = R.p.k.strides[2];
    if (R.D % 2 != 0) {  // odd D: copy with a zero pad so every pair lies inside a row
      for (std::int64_t c = 0; c < bc; ++c) {
        const auto* src = reinterpret_cast<const std::uint16_t*>(row_ptr(R.p.k, R.tb, R.t.kvh, n0 + c));
        std::copy(src, src + R.D, ws.k16.data() + c * Dp);
        ws.k16[c * Dp + R.D] = 0;
      }
      k = ws.k16.data();
      ldk = Dp;
    }
    for (std::int64_t c0 = 0; c0 < bc; c0 += I::kQkRows) {
      const int C = static_cast<int>(std::min<std::int64_t>(I::kQkRows, bc - c0));
      for (std::int64_t r0 = 0; r0 < R.rows_p; r0 += 2 * W)
        with_count<I::kQkRows>(C, [&](auto n) {
          qk_pairs_micro<decltype(n)::value>(k + c0 * ldk, ldk, ws.q16.data() + r0 * 2, R.rows_p, Dp / 2,
                                             ws.s.data() + c0 * R.rows_p + r0, R.rows_p);
        });
    }
  }

  // O[r][0 .. NV·W) += Σ_pairs P[r][pair]·V[pair][0 .. NV·W) for R rows.
  template <int NR, int NV>
  static void pv_pairs_micro(const std::uint16_t* p2, std::int64_t rows_p, const std::uint16_t* v2, std::int64_t dvp,
                             std::int64_t bch, float* o, std::int64_t ldo) {
    V acc[NR][NV];
    for (int r = 0; r < NR; ++r)
      for (int n = 0; n < NV; ++n) acc[r][n] = I::load(o + r * ldo + n * W);
    for (std::int64_t cp = 0; cp < bch; ++cp) {
      typename I::PairVec vv[NV];
      for (int n = 0; n < NV; ++n) vv[n] = I::load_pairs(v2 + (cp * dvp + n * W) * 2);
      for (int r = 0; r < NR; ++r) {
        const auto pb = I::bcast_pair(p2 + (cp * rows_p + r) * 2);
        for (int n = 0; n < NV; ++n) acc[r][n] = I::dot(acc[r][n], pb, vv[n]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int n = 0; n < NV; ++n) I::store(o + r * ldo + n * W, acc[r][n]);
  }

  /// Pᵀ pairs [bch][rows_p][2] rounded to bf16, zero for keys ≥ bc.
  static void pack_p_pairs(const Rows& R, Workspace& ws, std::int64_t bc, std::int64_t bch) {
    for (std::int64_t cp = 0; cp < bch; ++cp) {
      const bool has_lo = 2 * cp < bc, has_hi = 2 * cp + 1 < bc;
      for (std::int64_t r0 = 0; r0 < R.rows_p; r0 += W) {
        const V lo = has_lo ? I::load(ws.s.data() + 2 * cp * R.rows_p + r0) : I::zero();
        const V hi = has_hi ? I::load(ws.s.data() + (2 * cp + 1) * R.rows_p + r0) : I::zero();
        I::store_pairs(ws.p16.data() + (cp * R.rows_p + r0) * 2, I::pairs_f32(lo, hi));
      }
    }
  }

  static void pv_pairs(const Rows& R, Workspace& ws, std::int64_t j0, std::int64_t bc) {
    const std::int64_t bch = (bc + 1) / 2, n0 = R.p.tensor_col(R.t.b, j0);
    pack_p_pairs(R, ws, bc, bch);
    for (std::int64_t cp = 0; cp < bch; ++cp) {
      const bool has_hi = 2 * cp + 1 < bc;
      const auto* v_lo = reinterpret_cast<const std::uint16_t*>(row_ptr(R.p.v, R.tb, R.t.kvh, n0 + 2 * cp));
      const auto* v_hi = has_hi ? reinterpret_cast<const std::uint16_t*>(row_ptr(R.p.v, R.tb, R.t.kvh, n0 + 2 * cp + 1)) : nullptr;
      for (std::int64_t d0 = 0; d0 < R.dvp; d0 += W) {
        const int n = static_cast<int>(std::min<std::int64_t>(W, R.Dv - d0));
        I::store_pairs(ws.v16.data() + (cp * R.dvp + d0) * 2, I::pairs_bf16(v_lo + d0, v_hi ? v_hi + d0 : nullptr, n));
      }
    }
    for (std::int64_t d0 = 0; d0 < R.dvp; d0 += I::kPvVecs * W) {
      const int NV = static_cast<int>(std::min<std::int64_t>(I::kPvVecs, (R.dvp - d0) / W));
      for (std::int64_t r0 = 0; r0 < R.rows; r0 += I::kPvRows) {
        const int NR = static_cast<int>(std::min<std::int64_t>(I::kPvRows, R.rows - r0));
        with_count<I::kPvRows>(NR, [&](auto nr) {
          with_count<I::kPvVecs>(NV, [&](auto nv) {
            pv_pairs_micro<decltype(nr)::value, decltype(nv)::value>(ws.p16.data() + r0 * 2, R.rows_p, ws.v16.data() + d0 * 2,
                                                                     R.dvp, bch, ws.o.data() + r0 * R.dvp + d0, R.dvp);
          });
        });
      }
    }
  }

  /// Sᵀ of the tile's keys (whole 32-key blocks) on tiles, from the packed K rows.
  static void qk_tiles(const FwdPlan& plan, const Rows& R, Workspace& ws, std::int64_t j0, std::int64_t bc) {
    const amx::FwdPack& pk = plan.pack;
    amx::FwdTiles<typename I::Tiles>::qk(pk.k_rows(R.t.b, R.t.kvh) + j0 * pk.Dp, pk.Dp, ws.q16.data(), R.rows_p, bc,
                                         ws.s.data());
  }

  /// Oᵀ += Vᵀ·Pᵀ on tiles, from the Pᵀ pairs in ws.p16 (whole 32-key blocks, zero past bc).
  static void pv_tiles(const FwdPlan& plan, const Rows& R, Workspace& ws, std::int64_t j0, std::int64_t bc) {
    const amx::FwdPack& pk = plan.pack;
    const std::int64_t bcp = round_up(bc, 32);
    amx::FwdTiles<typename I::Tiles>::pv(pk.vt_rows(R.t.b, R.t.kvh) + j0, pk.keys[R.t.b], ws.p16.data(), R.rows_p, bcp,
                                         R.dvp, ws.o.data());
  }

  /// Oᵀ[d][r0 .. r0+W) *= alpha (the tile path's rescale, vectorised across rows).
  static void rescale_ot(const Rows& R, Workspace& ws, std::int64_t r0, const float* alpha) {
    const V a = I::load(alpha);
    for (std::int64_t d = 0; d < R.dvp; ++d) {
      float* o = ws.o.data() + d * R.rows_p + r0;
      I::store(o, I::mul(I::load(o), a));
    }
  }

  /// Qᵀ·q_scale [D × rows_p], zero for padding rows and rows that see no key (their memory is
  /// never read). Folding the softmax scale into Qᵀ saves a multiply per score.
  static void pack_qt(const Rows& R, Workspace& ws, float q_scale) {
    std::fill(ws.q.begin(), ws.q.begin() + R.D * R.rows_p, 0.0f);
    float* row = ws.row.data();
    for (std::int64_t r = 0; r < R.rows; ++r) {
      const std::int64_t ii = r % R.t.rows_q;
      if (ws.lo[ii] >= ws.hi[ii]) continue;
      to_f32(row_ptr(R.p.q, R.tb, R.head(r), R.p.tensor_row(R.t.b, R.pos(r))), R.p.q.dtype, R.D, row);
      for (std::int64_t d = 0; d < R.D; ++d) ws.q[d * R.rows_p + r] = row[d] * q_scale;
    }
  }

  /// A K or V tile of bc rows starting at key j0: in place for f32 with `width` a multiple of
  /// `align` (returns its leading dimension), else converted into `buf` with leading dim `ld_buf`.
  static const float* tile_rows(const Rows& R, const TensorView& x, std::int64_t j0, std::int64_t bc, std::int64_t width,
                                std::int64_t align, float* buf, std::int64_t ld_buf, std::int64_t* ld) {
    const std::int64_t n0 = R.p.tensor_col(R.t.b, j0);
    if (x.dtype == DType::f32 && width % align == 0) {
      *ld = x.strides[2];
      return reinterpret_cast<const float*>(row_ptr(x, R.tb, R.t.kvh, n0));
    }
    for (std::int64_t c = 0; c < bc; ++c) {
      to_f32(row_ptr(x, R.tb, R.t.kvh, n0 + c), x.dtype, width, buf + c * ld_buf);
      std::fill(buf + c * ld_buf + width, buf + (c + 1) * ld_buf, 0.0f);
    }
    *ld = ld_buf;
    return buf;
  }

  /// The score pipeline on the tile's raw dots, from the one list of variants
  /// (variants/pipeline.hpp): additive terms and keep rules alone in vectors (additive_pass);
  /// with softcap the fp32 row terms and finish_row row by row over each row's visible keys; the
  /// fp64 pipeline per element when a callback is given.
  static void element_pass(const Rows& R, bool vector_terms, std::int64_t j0, std::int64_t bc, Workspace& ws) {
    const core::SdpaProblem& p = R.p;
    const bool fp64 = variants::has_callback(p);
    const float scale = static_cast<float>(p.scale), cap = static_cast<float>(p.mask().softcap);
    if (vector_terms && !fp64 && cap == 0.0f) {  // additive terms and keep rules only: the vector form
      additive_pass(R, j0, bc, ws, scale);
      return;
    }
    float* add = ws.extra.data();
    for (std::int64_t r = 0; r < R.rows; ++r) {
      const std::int64_t ii = r % R.t.rows_q, h = R.head(r), i = R.pos(r);
      const std::int64_t lo = std::max<std::int64_t>(ws.lo[ii] - j0, 0), hi = std::min<std::int64_t>(ws.hi[ii] - j0, bc);
      if (lo >= hi) continue;
      float* x = ws.s.data() + r;
      const std::int64_t ld = R.rows_p;
      if (fp64) {
        for (std::int64_t c = lo; c < hi; ++c) x[c * ld] = variants::element_fp64(p, x[c * ld], R.t.b, h, i, j0 + c);
        continue;
      }
      variants::row_terms({p, R.t.b, h, i, j0}, lo, hi, add);
      variants::finish_row(x, ld, add, lo, hi, scale, cap);
    }
  }

  /// finish_row (variants/pipeline.hpp) without softcap, vectorised across the tile's rows: the
  /// row terms of every row (variants::row_terms, the pipeline's one fp32 form of the additive
  /// terms and keep rules) into a row-major tile A [rows × bcw], 0 outside each row's visible keys,
  /// then Sᵀ[c][r] = scale·Sᵀ[c][r] + A[r][c] (−inf where A is −inf, so a NaN dot of a hidden key
  /// cannot leak) on W × W blocks, A's rows turned into lanes by I::transpose. Keys outside a
  /// row's range get scale·s + 0 here; the row pass hides them (scale_mask_max, select_range).
  static void additive_pass(const Rows& R, std::int64_t j0, std::int64_t bc, Workspace& ws, float scale) {
    const std::int64_t bcw = round_up(bc, W), rows_w = round_up(R.rows, W), ld = R.rows_p;
    float* A = ws.extra.data();
    for (std::int64_t r = 0; r < rows_w; ++r) {
      float* a = A + r * bcw;
      std::int64_t lo = 0, hi = 0;
      if (r < R.rows) {
        const std::int64_t ii = r % R.t.rows_q;
        lo = std::max<std::int64_t>(ws.lo[ii] - j0, 0);
        hi = std::min<std::int64_t>(ws.hi[ii] - j0, bc);
      }
      if (lo >= hi) {
        std::fill(a, a + bcw, 0.0f);
        continue;
      }
      std::fill(a, a + lo, 0.0f);
      std::fill(a + hi, a + bcw, 0.0f);
      variants::row_terms({R.p, R.t.b, R.head(r), R.pos(r), j0}, lo, hi, a);
    }
    const V vs = I::set1(scale), neg_inf = I::set1(kNegInf);
    for (std::int64_t r0 = 0; r0 < rows_w; r0 += W) {
      for (std::int64_t c0 = 0; c0 < bc; c0 += W) {
        V a[W];
        for (int l = 0; l < W; ++l) a[l] = I::load(A + (r0 + l) * bcw + c0);
        I::transpose(a);  // a[k]: key c0 + k of rows r0 .. r0 + W
        const int n = static_cast<int>(std::min<std::int64_t>(W, bc - c0));
        for (int k = 0; k < n; ++k) {
          float* x = ws.s.data() + (c0 + k) * ld + r0;
          I::store(x, I::if_neg_inf(a[k], neg_inf, I::fma(I::load(x), vs, a[k])));
        }
      }
    }
  }

  /// Tile-relative key ranges of every tile row as floats (empty for padding rows).
  static void tile_ranges(const Rows& R, std::int64_t j0, std::int64_t bc, Workspace& ws) {
    for (std::int64_t r = 0; r < R.rows_p; ++r) {
      std::int64_t lo = 0, hi = 0;
      if (r < R.rows) {
        const std::int64_t ii = r % R.t.rows_q;
        lo = std::clamp<std::int64_t>(ws.lo[ii] - j0, 0, bc);
        hi = std::clamp<std::int64_t>(ws.hi[ii] - j0, 0, bc);
        if (lo >= hi) lo = hi = 0;
      }
      ws.lo_f[r] = static_cast<float>(lo);
      ws.hi_f[r] = static_cast<float>(hi);
    }
  }

  /// Sᵀ·scale with hidden keys set to −inf; returns per-lane (row) maxima over the tile.
  static V scale_mask_max(float* st, std::int64_t ld, std::int64_t r0, std::int64_t bc, const Workspace& ws, float scale) {
    float full_lo = 0.0f, full_hi = static_cast<float>(bc);  // keys visible to all W rows: no mask
    for (int lane = 0; lane < W; ++lane) {
      full_lo = std::max(full_lo, ws.lo_f[r0 + lane]);
      full_hi = std::min(full_hi, ws.hi_f[r0 + lane]);
    }
    const V vs = I::set1(scale), lo = I::load(ws.lo_f.data() + r0), hi = I::load(ws.hi_f.data() + r0);
    const bool scaled = scale == 1.0f;  // the scale was folded into Qᵀ (or applied by the element pass)
    V vmax = I::set1(kNegInf);
    for (std::int64_t c = 0; c < bc; ++c) {
      float* x = st + c * ld + r0;
      V s = scaled ? I::load(x) : I::mul(I::load(x), vs);
      if (static_cast<float>(c) < full_lo || static_cast<float>(c) >= full_hi) s = I::select_range(s, I::set1(static_cast<float>(c)), lo, hi, kNegInf);
      I::store(x, s);
      vmax = I::max(vmax, s);
    }
    return vmax;
  }

  /// P = exp(s − m) in place for lanes r0 .. r0+W; returns Σ_c P per lane.
  static V exp_sum(float* st, std::int64_t ld, std::int64_t r0, std::int64_t bc, V m) {
    V sum = I::zero();
    for (std::int64_t c = 0; c < bc; ++c) {
      float* x = st + c * ld + r0;
      const V e = I::exp(I::sub(I::load(x), m));
      I::store(x, e);
      sum = I::add(sum, e);
    }
    return sum;
  }

  /// Dropout on Pᵀ column r (after l was accumulated from the undropped P): P' = keep·P/(1 − p).
  static void dropout_row(const Rows& R, std::int64_t r, float* st, std::int64_t j0, std::int64_t lo, std::int64_t hi) {
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
      float& x = st[c * R.rows_p + r];
      x = words[static_cast<std::size_t>(j & 3)] >= p.dropout_threshold ? x * keep_scale : 0.0f;
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

  /// False when the tile is skipped: no row's key range reaches it, or a variant hides it all.
  static bool tile_visible(const Rows& R, const Workspace& ws, std::int64_t j0, std::int64_t bc) {
    bool any = false;
    for (std::int64_t ii = 0; ii < R.t.rows_q && !any; ++ii) any = ws.lo[ii] < j0 + bc && ws.hi[ii] > j0;
    const variants::Tile tile{R.t.b, R.t.kvh * R.p.G, (R.t.kvh + 1) * R.p.G, R.t.i0, R.t.i0 + R.t.rows_q, j0, j0 + bc};
    return any && variants::classify_tile(R.p, tile) != variants::TileClass::skip;
  }

  static void store_value(const TensorView& t, std::int64_t off, float x) { core::store_float(t.dtype, t.at(off), x); }

  /// O / l into out (and lse). The tile path holds Oᵀ [dvp][rows_p]: its W × W blocks are turned
  /// into rows by I::transpose and each row piece written by the same Convert as the vector paths'
  /// rows (the same products o·(1/l) and roundings), instead of a strided scalar read per element.
  static void epilogue(const Rows& R, const FwdPlan& plan, Workspace& ws) {
    const TensorView& out = plan.o->out;
    const auto row_base = [&](std::int64_t r) {  // out's element offset of row r
      return R.tb * out.strides[0] + R.head(r) * out.strides[1] + R.p.tensor_row(R.t.b, R.pos(r)) * out.strides[2];
    };
    float inv_l[isa::kMaxLanes];
    alignas(64) float piece[isa::kMaxLanes];
    for (std::int64_t r = 0; r < R.rows; ++r) {
      const SoftmaxState& st = ws.state[r];
      const float il = st.finalize();
      if (R.tiles) {
        inv_l[r % W] = il;
        if (r % W == W - 1 || r == R.rows - 1) {  // rows r0 .. r of one W-block, W rows of Oᵀ at a time
          const std::int64_t r0 = r / W * W, nr = r - r0 + 1;
          for (std::int64_t d0 = 0; d0 < R.Dv; d0 += W) {
            V a[W];
            for (int k = 0; k < W; ++k) a[k] = I::load(ws.o.data() + (d0 + k) * R.rows_p + r0);  // d0 + k < dvp
            I::transpose(a);  // a[l]: columns d0 .. d0 + W of row r0 + l
            const std::int64_t n = std::min<std::int64_t>(W, R.Dv - d0);
            for (std::int64_t l = 0; l < nr; ++l) {
              I::store(piece, a[l]);
              Convert<I>::from_f32(piece, 1, inv_l[l], n, out.dtype, out.at(row_base(r0 + l) + d0 * out.strides[3]),
                                   out.strides[3]);
            }
          }
        }
      } else {
        Convert<I>::from_f32(ws.o.data() + r * R.dvp, 1, il, R.Dv, out.dtype, out.at(row_base(r)), out.strides[3]);
      }
      if (plan.o->lse.defined()) {
        const TensorView& lse = plan.o->lse;
        const std::int64_t h = R.head(r), n = R.p.tensor_row(R.t.b, R.pos(r));
        *static_cast<float*>(lse.at(R.tb * lse.strides[0] + h * lse.strides[1] + n * lse.strides[2])) = st.lse();
      }
    }
  }

  /// Sᵀ of one tile after scale, extras and masking, ready for the softmax.
  static void scores(const Rows& R, const FwdPlan& plan, Workspace& ws, std::int64_t j0, std::int64_t bc, const float* k,
                     std::int64_t ldk) {
    if constexpr (kTiles) {
      if (R.tiles) qk_tiles(plan, R, ws, j0, bc);
      else qk(k, ldk, bc, ws.q.data(), R.rows_p, R.D, ws.s.data());
    } else if constexpr (kPairDot) {
      if (R.pairs) qk_pairs(R, ws, j0, bc);
      else qk(k, ldk, bc, ws.q.data(), R.rows_p, R.D, ws.s.data());
    } else {
      qk(k, ldk, bc, ws.q.data(), R.rows_p, R.D, ws.s.data());
    }
    if (plan.extras) element_pass(R, plan.vector_terms, j0, bc, ws);
    tile_ranges(R, j0, bc, ws);
  }

  /// probs = exp(s − lse) (pre-dropout) or its dropped-and-scaled form, by recomputing S per tile.
  static void write_probs(const Rows& R, const FwdPlan& plan, Workspace& ws, std::int64_t kv_begin, std::int64_t kv_end) {
    const core::SdpaProblem& p = R.p;
    const TensorView& probs = plan.o->probs;
    const bool post = p.params->probs_kind == ProbsKind::post_dropout && p.has_dropout();
    const float scale = row_pass_scale(R, plan);
    auto row_base = [&](std::int64_t r) {
      return R.tb * probs.strides[0] + R.head(r) * probs.strides[1] + p.tensor_row(R.t.b, R.pos(r)) * probs.strides[2];
    };
    for (std::int64_t r = 0; r < R.rows; ++r)
      for (std::int64_t c = 0; c < p.Nk; ++c) store_value(probs, row_base(r) + c * probs.strides[3], 0.0f);
    for (std::int64_t r = 0; r < R.rows_p; ++r) {  // subtract lse (0 for empty rows: all −inf anyway)
      const float lse = r < R.rows ? ws.state[r].lse() : kNegInf;
      ws.m_sub[r] = lse == kNegInf ? 0.0f : lse;
    }
    const std::int64_t Bc = plan.Bc;
    for (std::int64_t j0 = kv_begin / Bc * Bc; j0 < kv_end; j0 += Bc) {
      const std::int64_t bc = std::min(Bc, kv_end - j0);
      if (!tile_visible(R, ws, j0, bc)) continue;
      std::int64_t ldk = 0;
      const float* k = R.pairs || R.tiles ? nullptr : tile_rows(R, p.k, j0, bc, R.D, 1, ws.kt.data(), R.D, &ldk);
      scores(R, plan, ws, j0, bc, k, ldk);
      for (std::int64_t r0 = 0; r0 < R.rows_p; r0 += W) {
        scale_mask_max(ws.s.data(), R.rows_p, r0, bc, ws, scale);
        exp_sum(ws.s.data(), R.rows_p, r0, bc, I::load(ws.m_sub.data() + r0));
      }
      for (std::int64_t r = 0; r < R.rows; ++r) {
        const auto lo = static_cast<std::int64_t>(ws.lo_f[r]), hi = static_cast<std::int64_t>(ws.hi_f[r]);
        if (post) dropout_row(R, r, ws.s.data(), j0, lo, hi);
        for (std::int64_t c = lo; c < hi; ++c)
          store_value(probs, row_base(r) + p.tensor_col(R.t.b, j0 + c) * probs.strides[3], ws.s[c * R.rows_p + r]);
      }
    }
  }

  /// Online softmax of one tile: updates every row's SoftmaxState, turns Sᵀ into P̃ᵀ and rescales O.
  static void softmax_tile(const Rows& R, Workspace& ws, std::int64_t bc, float scale) {
    float tile_max[isa::kMaxLanes], tile_sum[isa::kMaxLanes], alphas[isa::kMaxLanes];
    for (std::int64_t r0 = 0; r0 < R.rows_p; r0 += W) {
      I::store(tile_max, scale_mask_max(ws.s.data(), R.rows_p, r0, bc, ws, scale));
      bool rescale = false;
      for (int lane = 0; lane < W; ++lane) {
        const std::int64_t r = r0 + lane;
        float& alpha = alphas[lane];
        alpha = 1.0f;
        const float m = r < R.rows ? ws.state[r].begin_tile(tile_max[lane], &alpha) : kNegInf;
        ws.m_sub[r] = m == kNegInf ? 0.0f : m;  // rows with nothing visible: s = −inf, P = 0
        if (alpha != 1.0f && !R.tiles) {
          float* o = ws.o.data() + r * R.dvp;
          for (std::int64_t d = 0; d < R.dvp; d += W) I::store(o + d, I::mul(I::load(o + d), I::set1(alpha)));
        }
        rescale |= alpha != 1.0f;
      }
      if (rescale && R.tiles) rescale_ot(R, ws, r0, alphas);
      I::store(tile_sum, exp_sum(ws.s.data(), R.rows_p, r0, bc, I::load(ws.m_sub.data() + r0)));
      for (int lane = 0; lane < W && r0 + lane < R.rows; ++lane) ws.state[r0 + lane].add(tile_sum[lane]);
    }
  }

  /// The tile path's online softmax of one tile (no dropout), fused with the rounding of P: per
  /// group of W rows, one read-only pass for the tile max of the scaled, masked scores, then
  /// P = exp(s·scale − m) = 2^(s·scale·log2 e − m·log2 e) (I::exp2, amx/exp2.hpp) written straight
  /// into the Pᵀ pairs of the P·V product (bf16; zero for hidden keys and for keys
  /// bc .. round_up(bc, 32)), with l summed from the unrounded P. The same states and masks as
  /// softmax_tile, with a lazy max (below); Sᵀ is not written back.
  /// The running max moves only when a tile's max passes it by more than kLazySlack (natural
  /// units), so most tiles need no rescale of Oᵀ; P ≤ e^kLazySlack ≈ 2981 then, exact in the sums
  /// (out and lse divide by the same l; bf16 keeps P's relative precision at any magnitude).
  static constexpr float kLazySlack = 8.0f;
  static void softmax_tile_pairs(const Rows& R, Workspace& ws, std::int64_t bc, float scale) {
    float tile_max[isa::kMaxLanes], tile_sum[isa::kMaxLanes], alphas[isa::kMaxLanes];
    const std::int64_t bch = round_up(bc, 32) / 2, ld = R.rows_p;
    const V vs = I::set1(scale);
    for (std::int64_t r0 = 0; r0 < R.rows_p; r0 += W) {
      float full_lo = 0.0f, full_hi = static_cast<float>(bc);  // keys visible to all W rows: no mask
      for (int lane = 0; lane < W; ++lane) {
        full_lo = std::max(full_lo, ws.lo_f[r0 + lane]);
        full_hi = std::min(full_hi, ws.hi_f[r0 + lane]);
      }
      const auto flo = static_cast<std::int64_t>(full_lo), fhi = static_cast<std::int64_t>(full_hi);  // integral
      const auto masked = [&](std::int64_t c) { return c < flo || c >= fhi; };
      const V lo = I::load(ws.lo_f.data() + r0), hi = I::load(ws.hi_f.data() + r0);
      const float* st = ws.s.data() + r0;
      V vmax = I::set1(kNegInf);
      for (std::int64_t c = 0; c < bc; ++c) {
        V s = I::mul(I::load(st + c * ld), vs);
        if (masked(c)) s = I::select_range(s, I::set1(static_cast<float>(c)), lo, hi, kNegInf);
        vmax = I::max(vmax, s);
      }
      I::store(tile_max, vmax);
      bool rescale = false;
      for (int lane = 0; lane < W; ++lane) {
        const std::int64_t r = r0 + lane;
        alphas[lane] = 1.0f;
        const float m = r < R.rows ? ws.state[r].begin_tile_lazy(tile_max[lane], kLazySlack, &alphas[lane]) : kNegInf;
        ws.m_sub[r] = m == kNegInf ? 0.0f : m;  // rows with nothing visible: every key hidden, P = 0
        rescale |= alphas[lane] != 1.0f;
      }
      if (rescale) rescale_ot(R, ws, r0, alphas);
      const V vs2 = I::set1(scale * isa::kLog2e);
      const V neg_m2 = I::mul(I::load(ws.m_sub.data() + r0), I::set1(-isa::kLog2e));
      V sum = I::zero();
      const auto p_at = [&](std::int64_t c) {
        if (c >= bc) return I::zero();
        V x = I::fma(I::load(st + c * ld), vs2, neg_m2);
        if (masked(c)) x = I::select_range(x, I::set1(static_cast<float>(c)), lo, hi, kNegInf);
        const V e = I::exp2(x);
        sum = I::add(sum, e);
        return e;
      };
      std::uint16_t* p16 = ws.p16.data() + r0 * 2;
      for (std::int64_t cp = 0; cp < bch; ++cp) {
        const V e0 = p_at(2 * cp), e1 = p_at(2 * cp + 1);
        I::store_pairs(p16 + cp * ld * 2, I::pairs_f32(e0, e1));
      }
      I::store(tile_sum, sum);
      for (int lane = 0; lane < W && r0 + lane < R.rows; ++lane) ws.state[r0 + lane].add(tile_sum[lane]);
    }
  }

  /// Where the softmax scale is applied: the element pass (extras), Qᵀ (fp32 path) or the row
  /// pass (bf16 pair and tile paths, whose Qᵀ keeps the input bits).
  static float q_scale(const Rows& R, const FwdPlan& plan) { return plan.extras ? 1.0f : static_cast<float>(R.p.scale); }
  static float row_pass_scale(const Rows& R, const FwdPlan& plan) {
    return (R.pairs || R.tiles) && !plan.extras ? static_cast<float>(R.p.scale) : 1.0f;
  }

  static void run(const FwdPlan& plan, const FwdTask& t, Workspace& ws) {
    const core::SdpaProblem& p = *plan.p;
    const std::int64_t rows = p.G * t.rows_q;
    const bool tiles = kTiles && !plan.pack.empty();
    // Oᵀ of the tile path has the packed Vᵀ's rows (a multiple of 16 for pv_tiles, also on the
    // 1-lane emulation), the vector paths Dv rounded to the vector width.
    const std::int64_t dvp = tiles ? plan.pack.dvp : round_up(p.Dv, W);
    const Rows R{p, t, p.tensor_b[t.b], rows, round_up(rows, kTiles ? 32 : 2 * W), p.D, p.Dv, dvp,
                 kPairDot && !kTiles && p.q.dtype == DType::bf16, tiles};
    const float scale = row_pass_scale(R, plan);
    auto [kv_begin, kv_end] = row_ranges(R, ws);
    for (std::int64_t r = 0; r < R.rows; ++r) ws.state[r] = SoftmaxState{};
    std::fill(ws.o.begin(), ws.o.begin() + R.rows_p * R.dvp, 0.0f);
    if constexpr (kTiles) {
      if (R.tiles) {
        pack_qt_pairs(R, ws, plan.pack.Dp);
        I::Tiles::begin();
      } else {
        pack_qt(R, ws, q_scale(R, plan));
      }
    } else if constexpr (kPairDot) {
      if (R.pairs) pack_qt_pairs(R, ws, round_up(R.D, 2));
      else pack_qt(R, ws, q_scale(R, plan));
    } else {
      pack_qt(R, ws, q_scale(R, plan));
    }
    const std::int64_t Bc = plan.Bc;
    for (std::int64_t j0 = kv_begin / Bc * Bc; j0 < kv_end; j0 += Bc) {
      const std::int64_t bc = std::min(Bc, kv_end - j0);
      if (!tile_visible(R, ws, j0, bc)) continue;  // skip: costs nothing
      std::int64_t ldk = 0, ldv = 0;
      const float* k = R.pairs || R.tiles ? nullptr : tile_rows(R, p.k, j0, bc, R.D, 1, ws.kt.data(), R.D, &ldk);
      scores(R, plan, ws, j0, bc, k, ldk);
      if constexpr (kTiles) {
        if (R.tiles) {
          if (p.has_dropout()) {  // dropout needs P in fp32 (dropout_row), then the pairs
            softmax_tile(R, ws, bc, scale);
            for (std::int64_t r = 0; r < R.rows; ++r)
              dropout_row(R, r, ws.s.data(), j0, static_cast<std::int64_t>(ws.lo_f[r]), static_cast<std::int64_t>(ws.hi_f[r]));
            pack_p_pairs(R, ws, bc, round_up(bc, 32) / 2);
          } else {
            softmax_tile_pairs(R, ws, bc, scale);
          }
          pv_tiles(plan, R, ws, j0, bc);
          continue;
        }
      }
      softmax_tile(R, ws, bc, scale);
      if (p.has_dropout())
        for (std::int64_t r = 0; r < R.rows; ++r)
          dropout_row(R, r, ws.s.data(), j0, static_cast<std::int64_t>(ws.lo_f[r]), static_cast<std::int64_t>(ws.hi_f[r]));
      if constexpr (kPairDot) {
        if (R.pairs) {
          pv_pairs(R, ws, j0, bc);
          continue;
        }
      }
      const float* v = tile_rows(R, p.v, j0, bc, R.Dv, W, ws.v.data(), R.dvp, &ldv);
      pv(ws.s.data(), R.rows, R.rows_p, bc, v, ldv, R.dvp, ws.o.data());
    }
    epilogue(R, plan, ws);
    if (plan.o->probs.defined()) write_probs(R, plan, ws, kv_begin, kv_end);
    if constexpr (kTiles) {
      if (R.tiles) I::Tiles::end();
    }
  }
};

}  // namespace attn::cpu
