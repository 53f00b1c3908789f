#pragma once
// Split-KV decode, one chunk of keys for one (b, kv head), templated over an ISA's vector traits I
// (cpu/isa/vec_traits.hpp), compiled once per ISA as part of its kernel table entry
// (cpu/isa/<isa>.cpp). For the
// R = G·Nq query rows of the kv group and keys j in the chunk, in aligned blocks of 16 keys (a
// block never straddles a page):
//   s_rj = pipeline(scale · q_r·k_j)      (i8: k_j = ks_j·k8_j, so s = scale·ks_j·(q_r·k8_j))
//   SoftmaxState: m_r, α = exp(m_old − m_new), p_rj = exp(s_rj − m_r), l_r = α·l_r + Σ_j p_rj
//   acc_r = α·acc_r + Σ_j p_rj·v_j        (i8: p_rj·vs_j·v8_j; bf16 widened on load)
// K and V are read once per group, in place; q rows stay in L1. The split into chunks, and the
// merge of chunk results in chunk order (decode.cpp), depend on len_b and D only, and every
// block's arithmetic is the same for contiguous and paged storage: bitwise equal results.
// Keys outside a row's [lo, hi) get s = −inf and are skipped in P·V (never 0·NaN); keys beyond
// len_b are never loaded. Idea: FlashDecoding (Dao et al. 2023), ggml/llama.cpp split-KV.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cache/decode_plan.hpp"
#include "core/dtype_visit.hpp"
#include "core/half.hpp"
#include "cpu/isa/vec_traits.hpp"
#include "variants/alibi.hpp"
#include "variants/softcap.hpp"

namespace attn::kv {

template <cpu::isa::VecTraits I>
struct DecodeKernel {
  using V = typename I::V;
  static constexpr int W = I::W;
  static constexpr std::int64_t kBlock = KvCache::Impl::kBlock;
  static constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  static constexpr int kRows = 4;                  // query rows per register block
  static constexpr int kPvVecs = W == 8 ? 2 : 4;   // P·V register block: kRows × kPvVecs vectors

  static V load(const float* p) { return I::load(p); }
  static V load(const std::uint16_t* p) { return I::load_bf16(p); }
  static V load(const std::int8_t* p) { return I::load_i8(p); }
  static float load1(const float* p) { return *p; }
  static float load1(const std::uint16_t* p) { return core::bf16_to_f32(*p); }
  static float load1(const std::int8_t* p) { return static_cast<float>(*p); }

  // s[r·16 + j] = q_r·k_j for NR rows and keys [0, n) of a block.
  template <int NR, class T>
  static void qk_rows(const float* const* q, const T* k, std::int64_t n, std::int64_t D, float* s) {
    const std::int64_t Dw = D / W * W;
    std::int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
      const T* k0 = k + j * D;
      const T* k1 = k0 + D;
      V acc[NR][2];
      for (int r = 0; r < NR; ++r) acc[r][0] = acc[r][1] = I::zero();
      for (std::int64_t d = 0; d < Dw; d += W) {
        const V a = load(k0 + d), b = load(k1 + d);
        for (int r = 0; r < NR; ++r) {
          const V qv = I::load(q[r] + d);
          acc[r][0] = I::fma(qv, a, acc[r][0]);
          acc[r][1] = I::fma(qv, b, acc[r][1]);
        }
      }
      for (int r = 0; r < NR; ++r) {
        float t0 = I::hsum(acc[r][0]), t1 = I::hsum(acc[r][1]);
        for (std::int64_t d = Dw; d < D; ++d) {
          t0 += q[r][d] * load1(k0 + d);
          t1 += q[r][d] * load1(k1 + d);
        }
        s[r * kBlock + j] = t0;
        s[r * kBlock + j + 1] = t1;
      }
    }
    for (; j < n; ++j) {
      const T* k0 = k + j * D;
      V acc[NR];
      for (int r = 0; r < NR; ++r) acc[r] = I::zero();
      for (std::int64_t d = 0; d < Dw; d += W) {
        const V a = load(k0 + d);
        for (int r = 0; r < NR; ++r) acc[r] = I::fma(I::load(q[r] + d), a, acc[r]);
      }
      for (int r = 0; r < NR; ++r) {
        float t = I::hsum(acc[r]);
        for (std::int64_t d = Dw; d < D; ++d) t += q[r][d] * load1(k0 + d);
        s[r * kBlock + j] = t;
      }
    }
  }

  // acc_r[0, Dv) += Σ_{j < n} p[r·16 + j]·v_j for NR rows (every row sees every key of the block).
  template <int NR, class T>
  static void pv_rows(const float* p, const T* v, std::int64_t n, std::int64_t Dv, float* const* acc) {
    constexpr std::int64_t kStep = kPvVecs * W;
    std::int64_t d0 = 0;
    for (; d0 + kStep <= Dv; d0 += kStep) {
      V o[NR][kPvVecs];
      for (int r = 0; r < NR; ++r)
        for (int c = 0; c < kPvVecs; ++c) o[r][c] = I::load(acc[r] + d0 + c * W);
      for (std::int64_t j = 0; j < n; ++j) {
        V vv[kPvVecs];
        for (int c = 0; c < kPvVecs; ++c) vv[c] = load(v + j * Dv + d0 + c * W);
        for (int r = 0; r < NR; ++r) {
          const V pb = I::set1(p[r * kBlock + j]);
          for (int c = 0; c < kPvVecs; ++c) o[r][c] = I::fma(pb, vv[c], o[r][c]);
        }
      }
      for (int r = 0; r < NR; ++r)
        for (int c = 0; c < kPvVecs; ++c) I::store(acc[r] + d0 + c * W, o[r][c]);
    }
    for (int r = 0; r < NR; ++r) pv_one(p + r * kBlock, v, 0, n, Dv, d0, acc[r]);
  }

  // acc[d0, Dv) += Σ_{j ∈ [ja, jb)} p_j·v_j for one row.
  template <class T>
  static void pv_one(const float* p, const T* v, std::int64_t ja, std::int64_t jb, std::int64_t Dv, std::int64_t d0,
                     float* acc) {
    std::int64_t d = d0;
    for (; d + W <= Dv; d += W) {
      V o = I::load(acc + d);
      for (std::int64_t j = ja; j < jb; ++j) o = I::fma(I::set1(p[j]), load(v + j * Dv + d), o);
      I::store(acc + d, o);
    }
    for (; d < Dv; ++d) {
      float o = acc[d];
      for (std::int64_t j = ja; j < jb; ++j) o += p[j] * load1(v + j * Dv + d);
      acc[d] = o;
    }
  }

  /// Calls f(std::integral_constant<int, n>) for n in [1, kRows].
  template <class F>
  static void with_rows(std::int64_t n, F&& f) {
    switch (n) {
      case 1: f(std::integral_constant<int, 1>{}); break;
      case 2: f(std::integral_constant<int, 2>{}); break;
      case 3: f(std::integral_constant<int, 3>{}); break;
      default: f(std::integral_constant<int, kRows>{}); break;
    }
  }

  // The scalar score pass for blocks that are masked in part or need softcap/ALiBi: the fp32 forms
  // of variants/softcap.hpp and variants/alibi.hpp (decode's variants: the cache has no masks).
  static void element_pass(const DecodePlan& pl, float* s, std::int64_t blk, std::int64_t lo, std::int64_t hi,
                           const float* ks, float slope, std::int64_t diag) {
    for (std::int64_t c = 0; c < kBlock; ++c) {
      const std::int64_t j = blk + c;
      if (j < lo || j >= hi) {
        s[c] = kNegInf;
        continue;
      }
      float x = s[c] * pl.scale;
      if (ks) x *= ks[c];
      float t = 0.0f;
      if (pl.softcap > 0.0f) x = variants::Softcap::value_f32(pl.softcap, x, &t);
      if (slope != 0.0f) x += variants::AlibiTerm::term(slope, diag, j);
      s[c] = x;
    }
  }

  // Scores of one block → probabilities: scale, softcap, ALiBi, mask, online softmax, α-rescale of
  // acc rows, i8 V scale folded into p. Returns false when no row has a visible key in the block.
  static bool softmax_block(const DecodePlan& pl, const DecodeItem& it, std::int64_t blk, std::int64_t ja,
                            std::int64_t jb, const float* ks, const float* vs, float* acc, cpu::SoftmaxState* st,
                            DecodeScratch& w) {
    bool any = false;
    const std::int64_t L = pl.cache->len[static_cast<std::size_t>(it.b)];
    for (std::int64_t r = 0; r < pl.R; ++r) {
      float* s = w.s.data() + r * kBlock;
      const std::int64_t lo = std::max(ja, w.lo[r]), hi = std::min(jb, w.hi[r]);
      if (lo >= hi) {
        for (std::int64_t c = 0; c < kBlock; ++c) s[c] = 0.0f;
        continue;
      }
      const std::int64_t h = it.kvh * pl.G + r / pl.Nq, i = r % pl.Nq;
      const float slope = pl.alibi.empty() ? 0.0f : pl.alibi[static_cast<std::size_t>(h)];
      const std::int64_t diag = L - pl.Nq + i;
      // The block's class for this row: full (every key visible, no variant) needs no element pass.
      if (lo == blk && hi == blk + kBlock && pl.softcap == 0.0f && slope == 0.0f) {
        const V sc = I::set1(pl.scale);
        for (std::int64_t c = 0; c < kBlock; c += W) {
          V x = I::mul(I::load(s + c), sc);
          if (ks) x = I::mul(x, I::load(ks + c));
          I::store(s + c, x);
        }
      } else {
        element_pass(pl, s, blk, lo, hi, ks, slope, diag);
      }
      V mv = I::set1(kNegInf);
      for (std::int64_t c = 0; c < kBlock; c += W) mv = I::max(mv, I::load(s + c));
      float alpha = 1.0f;
      const float m = st[r].begin_tile(I::hmax(mv), &alpha);
      if (m == kNegInf) {
        for (std::int64_t c = 0; c < kBlock; ++c) s[c] = 0.0f;
        continue;
      }
      any = true;
      const V mb = I::set1(m);
      V sum = I::zero();
      for (std::int64_t c = 0; c < kBlock; c += W) {
        const V e = I::exp(I::sub(I::load(s + c), mb));
        sum = I::add(sum, e);
        I::store(s + c, e);
      }
      st[r].add(I::hsum(sum));
      if (alpha != 1.0f) {
        float* a = acc + r * pl.Dv;
        for (std::int64_t d = 0; d < pl.Dv; ++d) a[d] *= alpha;
      }
      if (vs)
        for (std::int64_t j = lo; j < hi; ++j) s[j - blk] *= vs[j - blk];
    }
    return any;
  }

  // Software prefetch of [p, p + bytes): the blocks of paged storage, and V read column-wise in
  // P·V, defeat the hardware prefetcher (measured: loads of K and V were ~60 % of the kernel's
  // samples without it).
  static void prefetch(const char* p, std::int64_t bytes) {
    for (std::int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
  }

  template <class T>
  static void run_typed(const DecodePlan& pl, const DecodeItem& it, float* acc, cpu::SoftmaxState* st,
                        DecodeScratch& w) {
    const KvCache::Impl& c = *pl.cache;
    const std::int64_t R = pl.R, D = pl.D, Dv = pl.Dv;
    w.s.assign(static_cast<std::size_t>(R * kBlock), 0.0f);
    w.lo.resize(static_cast<std::size_t>(R));
    w.hi.resize(static_cast<std::size_t>(R));
    std::int64_t ulo = it.j1, uhi = it.j0;  // union of the rows' ranges within the chunk
    for (std::int64_t r = 0; r < R; ++r) {
      std::int64_t lo = 0, hi = 0;
      pl.range(it.b, r % pl.Nq, &lo, &hi);
      w.lo[r] = std::max(lo, it.j0);
      w.hi[r] = std::min(hi, it.j1);
      if (w.lo[r] < w.hi[r]) {
        ulo = std::min(ulo, w.lo[r]);
        uhi = std::max(uhi, w.hi[r]);
      }
      st[r] = cpu::SoftmaxState{};
    }
    std::fill(acc, acc + R * Dv, 0.0f);
    const float* q[kRows];
    float* a[kRows];
    for (std::int64_t blk = ulo / kBlock * kBlock; blk < uhi; blk += kBlock) {
      const std::int64_t ja = std::max(blk, ulo), jb = std::min(blk + kBlock, uhi);
      const T* kb = reinterpret_cast<const T*>(c.row(0, it.b, it.kvh, blk));
      const T* vb = reinterpret_cast<const T*>(c.row(1, it.b, it.kvh, blk));
      const float* ks = c.scale_ptr(0, it.b, it.kvh, blk);
      const float* vs = c.scale_ptr(1, it.b, it.kvh, blk);
      if (blk + kBlock < uhi) {  // the next block's K/V into cache while this one computes
        const std::int64_t n = std::min(kBlock, uhi - blk - kBlock);
        prefetch(c.row(0, it.b, it.kvh, blk + kBlock), n * D * sizeof(T));
        prefetch(c.row(1, it.b, it.kvh, blk + kBlock), n * Dv * sizeof(T));
      }
      for (std::int64_t r0 = 0; r0 < R; r0 += kRows) {                           // 1. S = Q·Kᵀ
        const std::int64_t nr = std::min<std::int64_t>(kRows, R - r0);
        for (std::int64_t r = 0; r < nr; ++r)
          q[r] = pl.q_row(it.b, it.kvh * pl.G + (r0 + r) / pl.Nq, (r0 + r) % pl.Nq);
        with_rows(nr, [&](auto n) {
          qk_rows<decltype(n)::value>(q, kb + (ja - blk) * D, jb - ja, D, w.s.data() + r0 * kBlock + (ja - blk));
        });
      }
      if (!softmax_block(pl, it, blk, ja, jb, ks, vs, acc, st, w)) continue;                      // 2. softmax
      bool full = true;                                                            // 3. O += P·V
      for (std::int64_t r = 0; r < R && full; ++r) full = w.lo[r] <= ja && w.hi[r] >= jb;
      if (full) {
        for (std::int64_t r0 = 0; r0 < R; r0 += kRows) {
          const std::int64_t nr = std::min<std::int64_t>(kRows, R - r0);
          for (std::int64_t r = 0; r < nr; ++r) a[r] = acc + (r0 + r) * Dv;
          with_rows(nr, [&](auto n) {
            pv_rows<decltype(n)::value>(w.s.data() + r0 * kBlock + (ja - blk), vb + (ja - blk) * Dv, jb - ja, Dv, a);
          });
        }
      } else {
        for (std::int64_t r = 0; r < R; ++r) {
          const std::int64_t lo = std::max(ja, w.lo[r]), hi = std::min(jb, w.hi[r]);
          if (lo < hi)
            pv_one(w.s.data() + r * kBlock + (lo - blk), vb + (lo - blk) * Dv, 0, hi - lo, Dv, 0, acc + r * Dv);
        }
      }
    }
  }

  static void run(const DecodePlan& pl, const DecodeItem& it, float* acc, cpu::SoftmaxState* st, DecodeScratch& w) {
    core::visit_dtype<DType::f32, DType::bf16, DType::i8>(pl.cache->cfg.dtype, "cache dtype", [&](auto d) {
      run_typed<typename core::Elem<decltype(d)::value>::T>(pl, it, acc, st, w);
    });
  }
};

}  // namespace attn::kv
