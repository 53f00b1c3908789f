#pragma once
// Causal linear attention in its recurrent form on one (batch row, kv head), templated on the
// vector traits of src/cpu/isa (docs/linear_attention.md). The recurrence of Katharopoulos et al.
// 2020 §3.4 ("Transformers are RNNs"): for each position i, with its key j = i + off,
//   S += φ(k_j) v_jᵀ,  z += φ(k_j),  out_i = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + eps)
// costs exactly 4·F·Dv flops per position and no intra-chunk quadratic work. It is register-
// blocked over kSlots consecutive (update, output) slots and over kVecs vectors of Dv: for each row
// f of S (F·Dv fp32, in L1 for F = Dv = 64), the S row piece is loaded once, the slots' rank-1
// updates and output FMAs are applied in causal order, and the row is stored once. Rows are
// independent, so the only dependency chains are a slot's output accumulators; the v pieces of the
// slots stay in registers for the whole pass. GQA: every position contributes G slots (its key's
// update on the first, none on the others), in causal order. z and the denominators are a
// side computation of length F per slot, done before the blocks, so each block scales its outputs
// by 1/den as it stores them (no second pass over the outputs). Keys, values and queries are loaded a chunk of C positions
// at a time with their feature maps (chunk_kernel.hpp's row loads and φ). Include after
// chunk_kernel.hpp inside an ISA region.

namespace attn::linear {

template <class T>
struct RecurrentKernel {
  using K = ChunkKernel<T>;
  using V = typename T::V;
  static constexpr int W = T::W;
  static constexpr int kSlots = 4;
  // Vectors of Dv per pass over S: kSlots·kVecs output accumulators + as many v vectors + kVecs S
  // vectors must fit the register file (AVX-512: 8 + 8 + 2 of 32; AVX2: 4 + 4 + 1 of 16).
  static constexpr int kVecs = W == 16 ? 2 : W == 8 ? 1 : 4;

  // Slots s = 0 .. kSlots − 1 in order: S[:, 0 .. NN·W) += kp[s] vp[s]ᵀ, then op[s] = inv[s]·qp[s]ᵀ S.
  // S has F rows of leading dimension lds; kp/qp rows have F entries, vp/op rows NN·W.
  template <int NN>
  static void block(std::int64_t F, const float* const* kp, const float* const* vp, const float* const* qp, float* S,
                    std::int64_t lds, float* const* op, const float* inv) {
    V vv[kSlots][NN], acc[kSlots][NN];
    for (int s = 0; s < kSlots; ++s)
      for (int n = 0; n < NN; ++n) {
        vv[s][n] = T::load(vp[s] + n * W);
        acc[s][n] = T::zero();
      }
    const float *k0 = kp[0], *k1 = kp[1], *k2 = kp[2], *k3 = kp[3];
    const float *q0 = qp[0], *q1 = qp[1], *q2 = qp[2], *q3 = qp[3];
    static_assert(kSlots == 4);
    for (std::int64_t f = 0; f < F; ++f) {
      float* row = S + f * lds;
      V sr[NN];
      for (int n = 0; n < NN; ++n) sr[n] = T::load(row + n * W);
      const float kf[kSlots] = {k0[f], k1[f], k2[f], k3[f]}, qf[kSlots] = {q0[f], q1[f], q2[f], q3[f]};
      for (int s = 0; s < kSlots; ++s) {
        const V kb = T::set1(kf[s]), qb = T::set1(qf[s]);
        for (int n = 0; n < NN; ++n) sr[n] = T::fma(kb, vv[s][n], sr[n]);
        for (int n = 0; n < NN; ++n) acc[s][n] = T::fma(qb, sr[n], acc[s][n]);
      }
      for (int n = 0; n < NN; ++n) T::store(row + n * W, sr[n]);
    }
    for (int s = 0; s < kSlots; ++s) {
      const V scale = T::set1(inv[s]);
      for (int n = 0; n < NN; ++n) T::store(op[s] + n * W, T::mul(acc[s][n], scale));
    }
  }

  // One block over every column piece of S [F][Dvp] (pieces of kVecs vectors, a narrower tail).
  static void block_all_columns(std::int64_t F, std::int64_t Dvp, const float* const* kp, const float* const* vp,
                                const float* const* qp, float* S, float* const* op, const float* inv) {
    for (std::int64_t c0 = 0; c0 < Dvp; c0 += kVecs * W) {
      const float* vpc[kSlots];
      float* opc[kSlots];
      for (int s = 0; s < kSlots; ++s) {
        vpc[s] = vp[s] + c0;
        opc[s] = op[s] + c0;
      }
      const std::int64_t nv = std::min<std::int64_t>(kVecs, (Dvp - c0) / W);
      if constexpr (kVecs >= 4) {
        if (nv == 3) {
          block<3>(F, kp, vpc, qp, S + c0, Dvp, opc, inv);
          continue;
        }
      }
      if constexpr (kVecs >= 2) {
        if (nv == 2) {
          block<2>(F, kp, vpc, qp, S + c0, Dvp, opc, inv);
          continue;
        }
      }
      if (nv == kVecs)
        block<kVecs>(F, kp, vpc, qp, S + c0, Dvp, opc, inv);
      else
        block<1>(F, kp, vpc, qp, S + c0, Dvp, opc, inv);
    }
  }

  // True when rows n0 .. n0 + count − 1 of t are f32 with unit column stride and exactly the padded
  // width, so the kernel can read (or write) them in place.
  static bool in_place(const TensorView& t, std::int64_t padded, std::int64_t n0, std::int64_t count) {
    return t.dtype == DType::f32 && t.strides[3] == 1 && t.shape[3] == padded && n0 >= 0 && n0 + count <= t.shape[2];
  }
  static const float* row(const TensorView& t, std::int64_t b, std::int64_t h, std::int64_t n) {
    return static_cast<const float*>(t.data) + b * t.strides[0] + h * t.strides[1] + n * t.strides[2];
  }

  static void forward_task(const CpuPlan& pl, const LinearAttentionOutputs& o, std::int64_t b, std::int64_t kvh) {
    const LinearProblem& p = *pl.p;
    typename K::Buffers w(pl);
    const std::int64_t C = pl.C, Fp = pl.Fp, Dvp = pl.Dvp, Dp = pl.Dp, G = p.G;
    const auto n_slots = static_cast<std::size_t>(G * C + kSlots);
    std::vector<float> pq(n_slots * static_cast<std::size_t>(Fp), 0.0f), num(n_slots * static_cast<std::size_t>(Dvp)),
        sum(n_slots), inv(n_slots), zero_row(static_cast<std::size_t>(std::max(Fp, Dvp)), 0.0f);
    std::fill(w.s.begin(), w.s.end(), 0.0f);
    std::fill(w.z.begin(), w.z.end(), 0.0f);
    if (pl.step && p.state_in.S.defined()) K::load_state(pl, w, p.state_in, b, kvh);
    const std::int64_t off = p.off[static_cast<std::size_t>(b)];
    // Keys every query sees (those before the first query's diagonal): the chunked sums.
    const std::int64_t pre = std::clamp<std::int64_t>(off, 0, p.Nk);
    for (std::int64_t j0 = 0; j0 < pre; j0 += C) {
      K::load_keys(pl, w, b, kvh, j0);
      if (j0 + C > pre) K::clear_keys_from(pl, w, pre - j0);
      K::add_keys(pl, w);
    }
    std::vector<const float*> kp(n_slots), vp(n_slots), qp(n_slots);
    std::vector<float*> op(n_slots);
    std::vector<char> key_ok(static_cast<std::size_t>(C));
    for (std::int64_t i0 = 0; i0 < p.Nq; i0 += C) {
      const std::int64_t rows = std::min(C, p.Nq - i0), j0 = i0 + off;
      // Key j0 + t belongs to position i0 + t; positions past Nq add no key.
      for (std::int64_t t = 0; t < C; ++t) key_ok[static_cast<std::size_t>(t)] = t < rows && p.key_valid(b, j0 + t);
      auto valid = [&](std::int64_t j) { return key_ok[static_cast<std::size_t>(j - j0)] != 0; };
      // k and v rows in place where the chunk is whole f32 rows of the padded width, else copied.
      const float* kx = in_place(p.k, Dp, j0, C) ? row(p.k, b, kvh, j0) : nullptr;
      const float* vx = in_place(p.v, Dvp, j0, C) ? row(p.v, b, kvh, j0) : nullptr;
      if (!kx) K::load_rows(p.k, b, kvh, j0, C, w.xk.data(), Dp, valid, false);
      if (!vx) K::load_rows(p.v, b, kvh, j0, C, w.v.data(), Dvp, valid, false);
      K::features(pl, kx ? kx : w.xk.data(), w.pk.data(), C, kx ? p.k.strides[2] : 0);
      for (std::int64_t t = 0; t < C; ++t)
        if (!valid(j0 + t)) std::fill(w.pk.begin() + t * Fp, w.pk.begin() + (t + 1) * Fp, 0.0f);
      for (std::int64_t g = 0; g < G; ++g) {
        const std::int64_t h = kvh * G + g;
        if (in_place(p.q, Dp, i0, C)) {
          K::features(pl, row(p.q, b, h, i0), pq.data() + g * C * Fp, rows, p.q.strides[2]);
        } else {
          K::load_rows(
              p.q, b, h, i0, C, w.xq.data(), Dp, [&](std::int64_t i) { return i < i0 + rows; }, false);
          K::features(pl, w.xq.data(), pq.data() + g * C * Fp, rows);
        }
      }
      // Outputs in place where they are f32 rows of the padded width, else through num.
      const bool out_in_place = in_place(o.out, Dvp, i0, rows);
      auto out_row = [&](std::int64_t g, std::int64_t r) {
        return out_in_place ? static_cast<float*>(o.out.data) + b * o.out.strides[0] +
                                  (kvh * G + g) * o.out.strides[1] + (i0 + r) * o.out.strides[2]
                            : num.data() + (g * C + r) * Dvp;
      };
      // Slots in causal order: position r's G query heads, its key's update on the first.
      std::int64_t n = 0;
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t g = 0; g < G; ++g, ++n) {
          const auto u = static_cast<std::size_t>(n);
          const bool update = g == 0 && valid(j0 + r);
          kp[u] = update ? w.pk.data() + r * Fp : zero_row.data();
          vp[u] = !update ? zero_row.data() : vx ? vx + r * p.v.strides[2] : w.v.data() + r * Dvp;
          qp[u] = pq.data() + (g * C + r) * Fp;
          op[u] = out_row(g, r);
        }
      for (std::int64_t e = 0; n % kSlots != 0; ++n, ++e) {  // empty slots: no update, output to scratch
        const auto u = static_cast<std::size_t>(n);
        kp[u] = vp[u] = qp[u] = zero_row.data();
        op[u] = num.data() + (G * C + e) * Dvp;
      }
      // z += φk_s, den_s = φq_s·z + eps, inv_s = 1/den_s (slot by slot, in causal order).
      for (std::int64_t s = 0; s < n; ++s) {
        const auto u = static_cast<std::size_t>(s);
        V acc = T::zero();
        float* z = w.z.data();
        for (std::int64_t f = 0; f < Fp; f += W) {
          const V zf = T::add(T::load(z + f), T::load(kp[u] + f));
          T::store(z + f, zf);
          acc = T::fma(T::load(qp[u] + f), zf, acc);
        }
        sum[u] = T::hsum(acc) + static_cast<float>(p.eps);
        inv[u] = 1.0f / sum[u];
      }
      for (std::int64_t s = 0; s < n; s += kSlots) {
        const auto u = static_cast<std::size_t>(s);
        // The rows of the next chunk's positions, spread over the blocks (a burst of prefetches at
        // the chunk's start fills the line-fill buffers and stalls).
        for (std::int64_t r = s / G; r < std::min((s + kSlots) / G, rows); ++r) {
          K::prefetch_row(p.k, b, kvh, j0 + C + r);
          K::prefetch_row(p.v, b, kvh, j0 + C + r);
          for (std::int64_t g = 0; g < G; ++g) K::prefetch_row(p.q, b, kvh * G + g, i0 + C + r);
        }
        block_all_columns(p.F, Dvp, &kp[u], &vp[u], &qp[u], w.s.data(), &op[u], &inv[u]);
      }
      for (std::int64_t g = 0; g < G; ++g) {
        const std::int64_t h = kvh * G + g;
        if (o.den.defined())
          for (std::int64_t r = 0; r < rows; ++r)
            static_cast<float*>(o.den.data)[b * o.den.strides[0] + h * o.den.strides[1] + (i0 + r) * o.den.strides[2]] =
                sum[static_cast<std::size_t>(r * G + g)];
        if (!out_in_place) K::store_rows(o.out, b, h, i0, rows, num.data() + g * C * Dvp, Dvp);
      }
    }
    if (pl.step) K::store_state(pl, w, p.state_out, b, kvh);
  }
};

}  // namespace attn::linear
