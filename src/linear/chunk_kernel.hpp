#pragma once
// Chunked linear attention on one (batch row, kv head), templated on the vector traits of
// src/cpu/isa (docs/linear_attention.md). Causal form (the chunked prefix sums of Katharopoulos et
// al. 2020 §3.2 written block-wise, as in Hua et al. 2022 "Transformer Quality in Linear Time" and
// Yang et al. 2023 "Gated Linear Attention"): queries and keys advance in chunks of C positions,
//   out_c = [φQ_c S + tril(φQ_c φK_cᵀ) V_c] / [φQ_c z + rowsum(tril(φQ_c φK_cᵀ)) + eps]
//   S += φK_cᵀ V_c,   z += colsum(φK_c)
// so every product is a small GEMM (one register-blocked micro-kernel, R × NV·W outputs,
// broadcast A, vector B) and memory is O(C·(F + Dv) + F·Dv) per thread. Non-causal: one pass builds
// S, z over key chunks, one pass applies them to query chunks. The backward is the same in
// reverse: a forward pass for dφQ (St = Sᵀ running), a reverse pass for dφK, dV (dSt = Σ dnum φqᵀ
// running), then the feature maps' vector-Jacobian products. Include inside an ISA region
// (isa_begin.hpp) after linear/kernel_includes.hpp.

namespace attn::linear {

template <class T>
struct ChunkKernel {
  using V = typename T::V;
  static constexpr int W = T::W;
  static constexpr int R = 4;            // micro-tile rows
  static constexpr int NV = T::kPvVecs;  // micro-tile width in vectors

  enum class Tri { none, lower_out, lower_a, upper_a };

  // C[r][n] (+)= Σ_k A[r][k] B[k][n] for r < rows, n < nv·W.
  template <int RR, int NN>
  static void tile(std::int64_t K, const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* Cm,
                   std::int64_t ldc, bool acc) {
    V c[RR][NN];
    for (int r = 0; r < RR; ++r)
      for (int v = 0; v < NN; ++v) c[r][v] = acc ? T::load(Cm + r * ldc + v * W) : T::zero();
    for (std::int64_t k = 0; k < K; ++k) {
      V b[NN];
      for (int v = 0; v < NN; ++v) b[v] = T::load(B + k * ldb + v * W);
      for (int r = 0; r < RR; ++r) {
        const V a = T::set1(A[r * lda + k]);
        for (int v = 0; v < NN; ++v) c[r][v] = T::fma(a, b[v], c[r][v]);
      }
    }
    for (int r = 0; r < RR; ++r)
      for (int v = 0; v < NN; ++v) T::store(Cm + r * ldc + v * W, c[r][v]);
  }

  template <int NN>
  static void tile_rows(int rows, std::int64_t K, const float* A, std::int64_t lda, const float* B, std::int64_t ldb,
                        float* Cm, std::int64_t ldc, bool acc) {
    switch (rows) {
      case 1: tile<1, NN>(K, A, lda, B, ldb, Cm, ldc, acc); break;
      case 2: tile<2, NN>(K, A, lda, B, ldb, Cm, ldc, acc); break;
      case 3: tile<3, NN>(K, A, lda, B, ldb, Cm, ldc, acc); break;
      default: tile<R, NN>(K, A, lda, B, ldb, Cm, ldc, acc); break;
    }
  }

  static void tile_any(int rows, int nv, std::int64_t K, const float* A, std::int64_t lda, const float* B,
                       std::int64_t ldb, float* Cm, std::int64_t ldc, bool acc) {
    if constexpr (NV >= 4) {
      if (nv >= 4) return tile_rows<4>(rows, K, A, lda, B, ldb, Cm, ldc, acc);
      if (nv == 3) return tile_rows<3>(rows, K, A, lda, B, ldb, Cm, ldc, acc);
    }
    if constexpr (NV >= 2) {
      if (nv >= 2) return tile_rows<2>(rows, K, A, lda, B, ldb, Cm, ldc, acc);
    }
    tile_rows<1>(rows, K, A, lda, B, ldb, Cm, ldc, acc);
  }

  // C [M][N] (+)= A [M][K] · B [K][N], row-major with leading dims; N a multiple of W.
  // lower_out: only C[r][n] with n <= r is needed (columns past the row block's last row are
  // skipped by whole vectors; the caller masks). lower_a: A[r][k] = 0 for k > r. upper_a:
  // A[r][k] = 0 for k < r.
  static void gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda, const float* B,
                   std::int64_t ldb, float* Cm, std::int64_t ldc, bool acc, Tri tri = Tri::none) {
    for (std::int64_t n0 = 0; n0 < N; n0 += NV * W) {
      const int nv = static_cast<int>(std::min<std::int64_t>(NV, (N - n0) / W));
      for (std::int64_t m0 = 0; m0 < M; m0 += R) {
        const int rows = static_cast<int>(std::min<std::int64_t>(R, M - m0));
        int nv_eff = nv;
        std::int64_t k0 = 0, k1 = K;
        if (tri == Tri::lower_out) {
          const std::int64_t need = m0 + rows - n0;  // columns n0 .. m0 + rows − 1
          if (need <= 0) continue;
          nv_eff = static_cast<int>(std::min<std::int64_t>(nv, (need + W - 1) / W));
        } else if (tri == Tri::lower_a) {
          k1 = std::min<std::int64_t>(K, m0 + rows);
        } else if (tri == Tri::upper_a) {
          k0 = std::min<std::int64_t>(K, m0);
        }
        tile_any(rows, nv_eff, k1 - k0, A + m0 * lda + k0, lda, B + k0 * ldb + n0, ldb, Cm + m0 * ldc + n0, ldc, acc);
      }
    }
  }

  // dst[r][c] = src[c][r] for r < rows_dst, c < cols_dst (16 × 16 register blocks where the traits
  // have them; every padded width is a multiple of 16).
  static void transpose(const float* src, std::int64_t lds, float* dst, std::int64_t ldd, std::int64_t rows_dst,
                        std::int64_t cols_dst) {
    if constexpr (requires { T::transpose16(src, lds, dst, ldd); }) {
      if (rows_dst % 16 == 0 && cols_dst % 16 == 0) {
        for (std::int64_t c = 0; c < cols_dst; c += 16)
          for (std::int64_t r = 0; r < rows_dst; r += 16)
            T::transpose16(src + c * lds + r, lds, dst + r * ldd + c, ldd);
        return;
      }
    }
    for (std::int64_t c = 0; c < cols_dst; ++c)
      for (std::int64_t r = 0; r < rows_dst; ++r) dst[r * ldd + c] = src[c * lds + r];
  }

  // Rows n0 .. n0 + C − 1 of t[b, h] into dst [C][ld] as fp32; rows with !valid(n) and columns
  // >= t.shape[3] are zero. prefetch: touch the same rows of the next chunk (f32 rows only).
  template <class Valid>
  static void load_rows(const TensorView& t, std::int64_t b, std::int64_t h, std::int64_t n0, std::int64_t C,
                        float* dst, std::int64_t ld, Valid&& valid, bool prefetch = true) {
    const std::int64_t cols = t.shape[3];
    for (std::int64_t r = 0; r < C; ++r) {
      float* d = dst + r * ld;
      const std::int64_t n = n0 + r;
      if (!valid(n)) {
        std::fill(d, d + ld, 0.0f);
        continue;
      }
      const std::int64_t off = b * t.strides[0] + h * t.strides[1] + n * t.strides[2];
      if (t.dtype == DType::f32 && t.strides[3] == 1) {
        const float* src = static_cast<const float*>(t.data) + off;
        if (prefetch && n + C < t.shape[2])  // the same row of the next chunk, a chunk ahead of its use
          for (std::int64_t c = 0; c < cols; c += 16) __builtin_prefetch(src + C * t.strides[2] + c);
        std::memcpy(d, src, static_cast<std::size_t>(cols) * sizeof(float));
      } else {
        for (std::int64_t c = 0; c < cols; ++c) d[c] = core::load_float(t.data, t.dtype, off + c * t.strides[3]);
      }
      std::fill(d + cols, d + ld, 0.0f);
    }
  }

  // Prefetches row n of t[b, h] (f32 rows with unit stride, 0 <= n < shape[2]; else nothing).
  static void prefetch_row(const TensorView& t, std::int64_t b, std::int64_t h, std::int64_t n) {
    if (t.dtype != DType::f32 || t.strides[3] != 1 || n < 0 || n >= t.shape[2]) return;
    const float* src = static_cast<const float*>(t.data) + b * t.strides[0] + h * t.strides[1] + n * t.strides[2];
    for (std::int64_t c = 0; c < t.shape[3]; c += 16) __builtin_prefetch(src + c);
  }

  // Writes rows r < rows of src [C][ld] (cols t.shape[3]) to t[b, h, n0 + r].
  static void store_rows(const TensorView& t, std::int64_t b, std::int64_t h, std::int64_t n0, std::int64_t rows,
                         const float* src, std::int64_t ld) {
    const std::int64_t cols = t.shape[3];
    const auto es = static_cast<std::int64_t>(dtype_size(t.dtype));
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t off = b * t.strides[0] + h * t.strides[1] + (n0 + r) * t.strides[2];
      if (t.dtype == DType::f32 && t.strides[3] == 1) {
        std::memcpy(static_cast<float*>(t.data) + off, src + r * ld, static_cast<std::size_t>(cols) * sizeof(float));
      } else {
        char* base = static_cast<char*>(t.data) + off * es;
        for (std::int64_t c = 0; c < cols; ++c)
          core::store_float(t.dtype, base + c * t.strides[3] * es, src[r * ld + c]);
      }
    }
  }

  // e^x for x <= 0: the traits' cheaper form where they have one (isa_avx512.cpp), else T::exp.
  static V exp_nonpositive(V x) {
    if constexpr (requires { T::exp_nonpositive(x); })
      return T::exp_nonpositive(x);
    else
      return T::exp(x);
  }

  // phi [C][Fp] = φ(x [C][Dp]) for rows r < rows (other rows zero); padding features zero. favor
  // needs xw [C][Fp] scratch.
  // ldx: x's row stride (0 = Dp; x rows may be the input's own rows when D = Dp).
  static void features(const CpuPlan& pl, const float* x, float* phi, std::int64_t rows, std::int64_t ldx = 0) {
    const LinearProblem& p = *pl.p;
    const std::int64_t C = pl.C, Dp = pl.Dp, Fp = pl.Fp, lx = ldx ? ldx : Dp;
    if (p.map == FeatureMap::elu) {
      // φ = max(x, 0) + e^{x − max(x, 0)} = x + 1 (x > 0), e^x otherwise.
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * lx;
        float* pr = phi + r * Fp;
        for (std::int64_t d = 0; d < Dp; d += W) {
          const V xv = T::load(xr + d);
          const V pos = T::max(xv, T::zero());
          T::store(pr + d, T::add(pos, exp_nonpositive(T::sub(xv, pos))));
        }
        std::fill(pr + p.D, pr + Fp, 0.0f);
      }
    } else {
      // φ_l = exp(c·ω_lᵀx − c²‖x‖²/2 − ½ ln m): one GEMM against ωᵀ, then a vector exp.
      gemm(rows, Fp, Dp, x, lx, pl.omega_t.data(), Fp, phi, Fp, false);
      const V cv = T::set1(pl.c);
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * lx;
        float sq = 0.0f;
        for (std::int64_t d = 0; d < p.D; ++d) sq += xr[d] * xr[d];
        const V shift = T::set1(-0.5f * pl.c * pl.c * sq + pl.log_norm);
        float* pr = phi + r * Fp;
        for (std::int64_t l = 0; l < Fp; l += W) T::store(pr + l, T::exp(T::fma(T::load(pr + l), cv, shift)));
        std::fill(pr + p.F, pr + Fp, 0.0f);
      }
    }
    std::fill(phi + rows * Fp, phi + C * Fp, 0.0f);
  }

  // dx [C][Dp] = (∂φ/∂x)ᵀ dphi for rows < rows, with phi = φ(x). Overwrites dphi (favor).
  static void features_vjp(const CpuPlan& pl, const float* x, const float* phi, float* dphi, float* dx,
                           std::int64_t rows) {
    const LinearProblem& p = *pl.p;
    const std::int64_t Dp = pl.Dp, Fp = pl.Fp;
    if (p.map == FeatureMap::elu) {
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t d = 0; d < Dp; d += W) {
          const V xv = T::load(x + r * Dp + d);
          const V deriv = exp_nonpositive(T::sub(xv, T::max(xv, T::zero())));  // 1 (x > 0), e^x otherwise
          T::store(dx + r * Dp + d, T::mul(T::load(dphi + r * Fp + d), deriv));
        }
      return;
    }
    // ∂φ_l/∂x = φ_l (c ω_l − c² x):  dx = c (dφ∘φ) ω − c² x Σ_l (dφ∘φ)_l
    for (std::int64_t r = 0; r < rows; ++r) {
      V acc = T::zero();
      for (std::int64_t l = 0; l < Fp; l += W) {
        const V w = T::mul(T::load(dphi + r * Fp + l), T::load(phi + r * Fp + l));
        T::store(dphi + r * Fp + l, T::mul(w, T::set1(pl.c)));
        acc = T::add(acc, w);
      }
      const float total = T::hsum(acc);
      const float coef = -pl.c * pl.c * total;
      for (std::int64_t d = 0; d < Dp; ++d) dx[r * Dp + d] = coef * x[r * Dp + d];
    }
    gemm(rows, Dp, Fp, dphi, Fp, pl.omega.data(), Dp, dx, Dp, true);
  }

  struct Buffers {
    std::vector<float> xq, pq, xk, pk, kt, v, vt, s, z, num, a, m, dnum, dnumt, dden, dpq, dx, dpk, dvt, sum;
    explicit Buffers(const CpuPlan& pl) {
      const auto C = static_cast<std::size_t>(pl.C), Dp = static_cast<std::size_t>(pl.Dp),
                 Fp = static_cast<std::size_t>(pl.Fp), Dvp = static_cast<std::size_t>(pl.Dvp);
      xq.resize(C * Dp);
      pq.resize(C * Fp);
      xk.resize(C * Dp);
      pk.resize(C * Fp);
      kt.resize(Fp * C);
      v.resize(C * Dvp);
      vt.resize(Dvp * C);
      s.resize(Fp * Dvp);
      z.resize(Fp);
      num.resize(C * Dvp);
      a.resize(C * C);
      m.resize(C * C);
      dnum.resize(C * Dvp);
      dnumt.resize(Dvp * C);
      dden.resize(C);
      dpq.resize(C * Fp);
      dx.resize(C * Dp);
      dpk.resize(C * Fp);
      dvt.resize(Dvp * C);
      sum.resize(C);
    }
  };

  // Keys j0 .. j0 + C − 1 of (b, kvh): xk, pk = φ(k) (zero rows for invalid keys), kt = pkᵀ, v.
  static void load_keys(const CpuPlan& pl, Buffers& w, std::int64_t b, std::int64_t kvh, std::int64_t j0) {
    const LinearProblem& p = *pl.p;
    auto valid = [&](std::int64_t j) { return p.key_valid(b, j); };
    load_rows(p.k, b, kvh, j0, pl.C, w.xk.data(), pl.Dp, valid);
    load_rows(p.v, b, kvh, j0, pl.C, w.v.data(), pl.Dvp, valid);
    features(pl, w.xk.data(), w.pk.data(), pl.C);
    for (std::int64_t t = 0; t < pl.C; ++t)
      if (!valid(j0 + t)) std::fill(w.pk.begin() + t * pl.Fp, w.pk.begin() + (t + 1) * pl.Fp, 0.0f);
    transpose(w.pk.data(), pl.Fp, w.kt.data(), pl.C, pl.Fp, pl.C);
  }

  // S [Fp][Dvp] += ktᵀ… i.e. S += φK_cᵀ V_c;  z += colsum φK_c.
  static void add_keys(const CpuPlan& pl, Buffers& w) {
    gemm(pl.Fp, pl.Dvp, pl.C, w.kt.data(), pl.C, w.v.data(), pl.Dvp, w.s.data(), pl.Dvp, true);
    for (std::int64_t t = 0; t < pl.C; ++t)
      for (std::int64_t f = 0; f < pl.Fp; f += W)
        T::store(w.z.data() + f, T::add(T::load(w.z.data() + f), T::load(w.pk.data() + t * pl.Fp + f)));
  }

  // Queries i0 .. i0 + rows − 1 of head h: xq, pq = φ(q).
  static void load_queries(const CpuPlan& pl, Buffers& w, std::int64_t b, std::int64_t h, std::int64_t i0,
                           std::int64_t rows) {
    load_rows(pl.p->q, b, h, i0, pl.C, w.xq.data(), pl.Dp, [&](std::int64_t i) { return i < i0 + rows; });
    features(pl, w.xq.data(), w.pq.data(), rows);
  }

  // w.a [C][C] = tril(φQ φKᵀ) (t <= r kept, others zero).
  static void intra_scores(const CpuPlan& pl, Buffers& w, std::int64_t rows) {
    const std::int64_t C = pl.C;
    gemm(rows, C, pl.Fp, w.pq.data(), pl.Fp, w.kt.data(), C, w.a.data(), C, false, Tri::lower_out);
    for (std::int64_t r = 0; r < C; ++r)
      std::fill(w.a.begin() + r * C + std::min(r + 1, r < rows ? C : 0), w.a.begin() + (r + 1) * C, 0.0f);
  }

  static void forward_task(const CpuPlan& pl, const LinearAttentionOutputs& o, std::int64_t b, std::int64_t kvh) {
    const LinearProblem& p = *pl.p;
    Buffers w(pl);
    const std::int64_t C = pl.C, Fp = pl.Fp, Dvp = pl.Dvp;
    std::fill(w.s.begin(), w.s.end(), 0.0f);
    std::fill(w.z.begin(), w.z.end(), 0.0f);
    if (pl.step && p.state_in.S.defined()) load_state(pl, w, p.state_in, b, kvh);
    const std::int64_t off = p.causal ? p.off[static_cast<std::size_t>(b)] : 0;
    // Keys every query sees: all of them (non-causal) or those before the first query's diagonal.
    const std::int64_t pre = p.causal ? std::clamp<std::int64_t>(off, 0, p.Nk) : p.Nk;
    for (std::int64_t j0 = 0; j0 < pre; j0 += C) {
      load_keys(pl, w, b, kvh, j0);
      if (j0 + C > pre) clear_keys_from(pl, w, pre - j0);
      add_keys(pl, w);
    }
    for (std::int64_t i0 = 0; i0 < p.Nq; i0 += C) {
      const std::int64_t rows = std::min(C, p.Nq - i0), j0 = i0 + off;
      if (p.causal) load_keys(pl, w, b, kvh, j0);
      for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h) {
        load_queries(pl, w, b, h, i0, rows);
        gemm(rows, Dvp, Fp, w.pq.data(), Fp, w.s.data(), Dvp, w.num.data(), Dvp, false);
        row_dots(w.pq.data(), Fp, w.z.data(), rows, w.sum.data());
        if (p.causal) {
          intra_scores(pl, w, rows);
          gemm(rows, Dvp, C, w.a.data(), C, w.v.data(), Dvp, w.num.data(), Dvp, true, Tri::lower_a);
          for (std::int64_t r = 0; r < rows; ++r) {  // rowsum of tril(A): the row is zero past r
            V acc = T::zero();
            for (std::int64_t t = 0; t < C; t += W)
              acc = T::add(acc, T::load(&w.a[static_cast<std::size_t>(r * C + t)]));
            w.sum[static_cast<std::size_t>(r)] += T::hsum(acc);
          }
        }
        for (std::int64_t r = 0; r < rows; ++r) {
          const float den = w.sum[static_cast<std::size_t>(r)] + static_cast<float>(p.eps);
          const V inv = T::set1(1.0f / den);
          for (std::int64_t d = 0; d < Dvp; d += W)
            T::store(&w.num[static_cast<std::size_t>(r * Dvp + d)],
                     T::mul(T::load(&w.num[static_cast<std::size_t>(r * Dvp + d)]), inv));
          if (o.den.defined())
            static_cast<float*>(o.den.data)[b * o.den.strides[0] + h * o.den.strides[1] + (i0 + r) * o.den.strides[2]] =
                den;
        }
        store_rows(o.out, b, h, i0, rows, w.num.data(), Dvp);
      }
      if (p.causal) add_keys(pl, w);
    }
    if (pl.step) store_state(pl, w, p.state_out, b, kvh);
  }

  // Zeroes key rows t >= t0 of the loaded chunk (keys past a prefix boundary).
  static void clear_keys_from(const CpuPlan& pl, Buffers& w, std::int64_t t0) {
    for (std::int64_t t = t0; t < pl.C; ++t) {
      std::fill(w.pk.begin() + t * pl.Fp, w.pk.begin() + (t + 1) * pl.Fp, 0.0f);
      std::fill(w.v.begin() + t * pl.Dvp, w.v.begin() + (t + 1) * pl.Dvp, 0.0f);
      for (std::int64_t f = 0; f < pl.Fp; ++f) w.kt[static_cast<std::size_t>(f * pl.C + t)] = 0.0f;
    }
  }

  // out[r] = Σ_f a[r][f] z[f].
  static void row_dots(const float* a, std::int64_t lda, const float* z, std::int64_t rows, float* out) {
    for (std::int64_t r = 0; r < rows; ++r) {
      V acc = T::zero();
      for (std::int64_t f = 0; f < lda; f += W) acc = T::fma(T::load(a + r * lda + f), T::load(z + f), acc);
      out[r] = T::hsum(acc);
    }
  }

  static void load_state(const CpuPlan& pl, Buffers& w, const LinearAttentionState& st, std::int64_t b,
                         std::int64_t kvh) {
    const LinearProblem& p = *pl.p;
    const auto* S = static_cast<const float*>(st.S.data);
    const auto* z = static_cast<const float*>(st.z.data);
    for (std::int64_t f = 0; f < p.F; ++f) {
      w.z[static_cast<std::size_t>(f)] = z[b * st.z.strides[0] + kvh * st.z.strides[1] + f * st.z.strides[2]];
      for (std::int64_t d = 0; d < p.Dv; ++d)
        w.s[static_cast<std::size_t>(f * pl.Dvp + d)] =
            S[b * st.S.strides[0] + kvh * st.S.strides[1] + f * st.S.strides[2] + d * st.S.strides[3]];
    }
  }

  static void store_state(const CpuPlan& pl, const Buffers& w, const LinearAttentionState& st, std::int64_t b,
                          std::int64_t kvh) {
    const LinearProblem& p = *pl.p;
    auto* S = static_cast<float*>(st.S.data);
    auto* z = static_cast<float*>(st.z.data);
    for (std::int64_t f = 0; f < p.F; ++f) {
      z[b * st.z.strides[0] + kvh * st.z.strides[1] + f * st.z.strides[2]] = w.z[static_cast<std::size_t>(f)];
      for (std::int64_t d = 0; d < p.Dv; ++d)
        S[b * st.S.strides[0] + kvh * st.S.strides[1] + f * st.S.strides[2] + d * st.S.strides[3]] =
            w.s[static_cast<std::size_t>(f * pl.Dvp + d)];
    }
  }

  // Output gradients of queries i0.. of head h: dnum = g / den, dden = −(g·out) / den, dnumt = dnumᵀ.
  static void load_dout(const CpuPlan& pl, const BwdArgs& a, Buffers& w, std::int64_t b, std::int64_t h,
                        std::int64_t i0, std::int64_t rows) {
    const std::int64_t C = pl.C, Dvp = pl.Dvp;
    auto in = [&](std::int64_t i) { return i < i0 + rows; };
    load_rows(a.dout, b, h, i0, C, w.dnum.data(), Dvp, in);
    load_rows(a.out, b, h, i0, C, w.num.data(), Dvp, in);
    for (std::int64_t r = 0; r < C; ++r) {
      if (r >= rows) {
        w.dden[static_cast<std::size_t>(r)] = 0.0f;
        continue;
      }
      const float den = static_cast<const float*>(
          a.den.data)[b * a.den.strides[0] + h * a.den.strides[1] + (i0 + r) * a.den.strides[2]];
      const float inv = 1.0f / den;
      float go = 0.0f;
      for (std::int64_t d = 0; d < Dvp; ++d) {
        go += w.dnum[static_cast<std::size_t>(r * Dvp + d)] * w.num[static_cast<std::size_t>(r * Dvp + d)];
        w.dnum[static_cast<std::size_t>(r * Dvp + d)] *= inv;
      }
      w.dden[static_cast<std::size_t>(r)] = -go * inv;
    }
    transpose(w.dnum.data(), Dvp, w.dnumt.data(), C, Dvp, C);
  }

  static void backward_task(const CpuPlan& pl, const BwdArgs& a, std::int64_t b, std::int64_t kvh) {
    const LinearProblem& p = *pl.p;
    const LinearAttentionGrads& g = *a.g;
    Buffers w(pl);
    const std::int64_t C = pl.C, Fp = pl.Fp, Dvp = pl.Dvp, Dp = pl.Dp;
    const std::int64_t off = p.causal ? p.off[static_cast<std::size_t>(b)] : 0;
    const std::int64_t pre = p.causal ? std::clamp<std::int64_t>(off, 0, p.Nk) : p.Nk;
    float* st = w.s.data();  // pass 1: Sᵀ [Dvp][Fp]; pass 2: dSᵀ [Dvp][Fp]
    auto add_keys_t = [&] {  // Sᵀ += V_cᵀ φK_c, z += colsum φK_c
      transpose(w.v.data(), Dvp, w.vt.data(), C, Dvp, C);
      gemm(Dvp, Fp, C, w.vt.data(), C, w.pk.data(), Fp, st, Fp, true);
      for (std::int64_t t = 0; t < C; ++t)
        for (std::int64_t f = 0; f < Fp; f += W)
          T::store(w.z.data() + f, T::add(T::load(w.z.data() + f), T::load(w.pk.data() + t * Fp + f)));
    };
    // Pass 1 (queries in order): dφQ = dnum Sᵀ... i.e. dφq_r = S dnum_r + z dden_r (+ the chunk's own keys).
    std::fill(w.s.begin(), w.s.end(), 0.0f);
    std::fill(w.z.begin(), w.z.end(), 0.0f);
    for (std::int64_t j0 = 0; j0 < pre; j0 += C) {
      load_keys(pl, w, b, kvh, j0);
      if (j0 + C > pre) clear_keys_from(pl, w, pre - j0);
      add_keys_t();
    }
    for (std::int64_t i0 = 0; i0 < p.Nq; i0 += C) {
      const std::int64_t rows = std::min(C, p.Nq - i0);
      if (p.causal) {
        load_keys(pl, w, b, kvh, i0 + off);
        transpose(w.v.data(), Dvp, w.vt.data(), C, Dvp, C);
      }
      for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h) {
        load_queries(pl, w, b, h, i0, rows);
        load_dout(pl, a, w, b, h, i0, rows);
        gemm(rows, Fp, Dvp, w.dnum.data(), Dvp, st, Fp, w.dpq.data(), Fp, false);
        for (std::int64_t r = 0; r < rows; ++r) {
          const V dd = T::set1(w.dden[static_cast<std::size_t>(r)]);
          for (std::int64_t f = 0; f < Fp; f += W)
            T::store(&w.dpq[static_cast<std::size_t>(r * Fp + f)],
                     T::fma(dd, T::load(w.z.data() + f), T::load(&w.dpq[static_cast<std::size_t>(r * Fp + f)])));
        }
        if (p.causal) {  // M[r][t] = dnum_r·v_t + dden_r (t <= r);  dφQ += M φK_c
          gemm(rows, C, Dvp, w.dnum.data(), Dvp, w.vt.data(), C, w.m.data(), C, false, Tri::lower_out);
          for (std::int64_t r = 0; r < C; ++r)
            for (std::int64_t t = 0; t < C; ++t)
              w.m[static_cast<std::size_t>(r * C + t)] =
                  (r < rows && t <= r) ? w.m[static_cast<std::size_t>(r * C + t)] + w.dden[static_cast<std::size_t>(r)]
                                       : 0.0f;
          gemm(rows, Fp, C, w.m.data(), C, w.pk.data(), Fp, w.dpq.data(), Fp, true, Tri::lower_a);
        }
        features_vjp(pl, w.xq.data(), w.pq.data(), w.dpq.data(), w.dx.data(), rows);
        store_rows(g.dq, b, h, i0, rows, w.dx.data(), Dp);
      }
      if (p.causal) add_keys_t();
    }
    // Pass 2 (queries in reverse): dSᵀ = Σ_{later queries} dnum φqᵀ, dz = Σ dden φq.
    std::fill(w.s.begin(), w.s.end(), 0.0f);
    std::fill(w.z.begin(), w.z.end(), 0.0f);
    auto add_queries = [&](std::int64_t rows) {  // dSᵀ += dnumᵀ φQ, dz += Σ_r dden_r φq_r
      gemm(Dvp, Fp, C, w.dnumt.data(), C, w.pq.data(), Fp, st, Fp, true);
      for (std::int64_t r = 0; r < rows; ++r) {
        const V dd = T::set1(w.dden[static_cast<std::size_t>(r)]);
        for (std::int64_t f = 0; f < Fp; f += W)
          T::store(w.z.data() + f,
                   T::fma(dd, T::load(&w.pq[static_cast<std::size_t>(r * Fp + f)]), T::load(w.z.data() + f)));
      }
    };
    // Key gradients from the running sums: dφK = V dSᵀ… (dφk_t = dS v_t + dz), dVᵀ = dSᵀ φKᵀ.
    auto key_grads_from_sums = [&] {
      gemm(C, Fp, Dvp, w.v.data(), Dvp, st, Fp, w.dpk.data(), Fp, false);
      for (std::int64_t t = 0; t < C; ++t)
        for (std::int64_t f = 0; f < Fp; f += W)
          T::store(&w.dpk[static_cast<std::size_t>(t * Fp + f)],
                   T::add(T::load(&w.dpk[static_cast<std::size_t>(t * Fp + f)]), T::load(w.z.data() + f)));
      gemm(Dvp, C, Fp, st, Fp, w.kt.data(), C, w.dvt.data(), C, false);
    };
    auto store_key_grads = [&](std::int64_t j0, std::int64_t t_end) {
      for (std::int64_t t = 0; t < C; ++t)
        if (!p.key_valid(b, j0 + t)) std::fill(w.dpk.begin() + t * Fp, w.dpk.begin() + (t + 1) * Fp, 0.0f);
      features_vjp(pl, w.xk.data(), w.pk.data(), w.dpk.data(), w.dx.data(), C);
      transpose(w.dvt.data(), C, w.num.data(), Dvp, C, Dvp);  // dV [C][Dvp]
      const std::int64_t t0 = std::max<std::int64_t>(0, -j0), t1 = std::min<std::int64_t>(t_end, p.Nk - j0);
      if (t1 > t0) {
        store_rows(g.dk, b, kvh, j0 + t0, t1 - t0, w.dx.data() + t0 * Dp, Dp);
        store_rows(g.dv, b, kvh, j0 + t0, t1 - t0, w.num.data() + t0 * Dvp, Dvp);
      }
    };
    if (!p.causal) {
      for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h)
        for (std::int64_t i0 = 0; i0 < p.Nq; i0 += C) {
          const std::int64_t rows = std::min(C, p.Nq - i0);
          load_queries(pl, w, b, h, i0, rows);
          load_dout(pl, a, w, b, h, i0, rows);
          add_queries(rows);
        }
    } else {
      const std::int64_t last = p.Nq == 0 ? -C : (p.Nq - 1) / C * C;
      for (std::int64_t i0 = last; i0 >= 0; i0 -= C) {
        const std::int64_t rows = std::min(C, p.Nq - i0), j0 = i0 + off;
        load_keys(pl, w, b, kvh, j0);
        key_grads_from_sums();
        for (std::int64_t h = kvh * p.G; h < (kvh + 1) * p.G; ++h) {
          load_queries(pl, w, b, h, i0, rows);
          load_dout(pl, a, w, b, h, i0, rows);
          // Mᵀ[t][r] = v_t·dnum_r + dden_r (r >= t);  dφK += Mᵀ φQ
          gemm(C, C, Dvp, w.v.data(), Dvp, w.dnumt.data(), C, w.m.data(), C, false);
          for (std::int64_t t = 0; t < C; ++t)
            for (std::int64_t r = 0; r < C; ++r)
              w.m[static_cast<std::size_t>(t * C + r)] =
                  (r < rows && r >= t) ? w.m[static_cast<std::size_t>(t * C + r)] + w.dden[static_cast<std::size_t>(r)]
                                       : 0.0f;
          gemm(C, Fp, C, w.m.data(), C, w.pq.data(), Fp, w.dpk.data(), Fp, true, Tri::upper_a);
          // dVᵀ += dnumᵀ tril(φQ φKᵀ)
          intra_scores(pl, w, rows);
          gemm(Dvp, C, C, w.dnumt.data(), C, w.a.data(), C, w.dvt.data(), C, true);
          add_queries(rows);
        }
        store_key_grads(j0, rows);
      }
    }
    // Keys every query sees (non-causal: all; causal: those before the first diagonal).
    for (std::int64_t j0 = 0; j0 < pre; j0 += C) {
      load_keys(pl, w, b, kvh, j0);
      key_grads_from_sums();
      store_key_grads(j0, std::min(C, pre - j0));
    }
    // Keys no query sees get zero gradients.
    const std::int64_t seen = p.causal ? std::clamp<std::int64_t>(p.Nq + off, pre, p.Nk) : p.Nk;
    std::fill(w.dx.begin(), w.dx.end(), 0.0f);
    std::fill(w.num.begin(), w.num.end(), 0.0f);
    for (std::int64_t j0 = seen; j0 < p.Nk; j0 += C) {
      store_rows(g.dk, b, kvh, j0, std::min(C, p.Nk - j0), w.dx.data(), Dp);
      store_rows(g.dv, b, kvh, j0, std::min(C, p.Nk - j0), w.num.data(), Dvp);
    }
  }
};

}  // namespace attn::linear
