// Strided sparse attention (Child et al. 2019) with a local window and global tokens (Longformer,
// Beltagy et al. 2020; BigBird, Zaheer et al. 2020): the pattern is cut into dense banded pieces
// (sparse/pieces.hpp), each one attn::sdpa_forward / sdpa_backward call on strided views of q, k,
// v, out (no copies of the inputs). docs/sparse_attention.md.
//   Forward: each piece gives (out_p, lse_p) over its keys; they merge row by row through the LSE
//   (lse = log Σ_p e^{lse_p}, out = Σ_p e^{lse_p − lse}·out_p), i.e. one softmax over the union.
//   Backward (FlashAttention's identity, docs/contract.md): with the merged out and lse the
//   softmax of a piece's scores is the union's P_ij and rowsum(dO ∘ O) the union's Δ_i, so each
//   piece's sdpa_backward given the global out, lse, dout (and dlse) returns exactly its share of
//   dq, dk, dv; the shares are summed in fp32 (fp64 for fp64 inputs) in piece order.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/sparse_attention.hpp"
#include "core/dtype_visit.hpp"
#include "core/problem.hpp"
#include "sparse/pieces.hpp"

namespace attn {
namespace {

using sparse::Piece;

// The checks of the pattern's own parameters; shapes, dtypes and overlaps are SDPA's (core).
std::int64_t check_params(const TensorView& q, const TensorView& k, const StridedAttentionParams& p) {
  ATTN_CHECK(p.stride >= 1, value, "params.stride", "= ", p.stride,
             ", expected s >= 1 (query i sees the keys j with (i - j) mod s = 0; s = 1 is dense attention)");
  ATTN_CHECK(p.window >= 0, value, "params.window", "= ", p.window,
             ", expected w >= 0 (keys with |i - j| <= w are visible too; 0 adds nothing)");
  ATTN_CHECK(p.global_tokens >= 0, value, "params.global_tokens", "= ", p.global_tokens,
             ", expected g >= 0 (keys j < g are seen by every query, queries i < g see every key)");
  const std::int64_t Nq = q.rank == 4 ? q.shape[2] : 0, Nk = k.rank == 4 ? k.shape[2] : 0;
  ATTN_CHECK(p.alignment || Nq == Nk, value, "params.alignment", "is not set, but Nq = ", Nq, " != Nk = ", Nk,
             ", expected top_left (query i at position i) or bottom_right (query i at position i + Nk - Nq): "
             "the residue classes, the window and the global queries depend on where the queries sit");
  if (!p.k_lengths.empty()) {
    const std::int64_t B = q.shape[0];
    ATTN_CHECK(static_cast<std::int64_t>(p.k_lengths.size()) == B, shape, "params.k_lengths", "has ",
               p.k_lengths.size(), " entries, expected B = ", B, " (one key length per batch row)");
    for (std::size_t b = 0; b < p.k_lengths.size(); ++b)
      ATTN_CHECK(p.k_lengths[b] >= 0 && p.k_lengths[b] <= Nk, value, "params.k_lengths", "[", b, "] = ", p.k_lengths[b],
                 ", expected a length in [0, Nk = ", Nk, "]");
    ATTN_CHECK(p.alignment != Alignment::bottom_right || Nq == Nk, unsupported, "params.k_lengths",
               "is given with bottom_right alignment and Nq = ", Nq, " != Nk = ", Nk,
               ", expected top_left (bottom_right would move each row's query positions with its key length)");
  }
  return p.alignment == Alignment::bottom_right ? Nk - Nq : 0;
}

SdpaParams piece_params(const Piece& piece, const StridedAttentionParams& p) {
  SdpaParams sp;
  sp.scale = p.scale;
  sp.mask.window_left = piece.window_left;
  sp.mask.window_right = piece.window_right;
  sp.mask.alignment = Alignment::top_left;
  for (std::int64_t Lk : p.k_lengths)  // the keys of the piece's view below Lk
    sp.mask.k_lengths.push_back(std::clamp<std::int64_t>((Lk - piece.j0 + piece.step - 1) / piece.step, 0, piece.nk));
  sp.backend = p.backend;
  sp.num_threads = p.num_threads;
  return sp;
}

// Rows start + a·step (a < n) of axis 2 of a [B, H, N, ...] view.
TensorView rows(const TensorView& t, std::int64_t start, std::int64_t n, std::int64_t step) {
  if (!t.defined()) return t;
  TensorView r = t;
  r.data = t.at(start * t.strides[2]);
  r.shape[2] = n;
  r.strides[2] = t.strides[2] * step;
  return r;
}

// A contiguous scratch tensor of dtype `dt` viewed as [d0, d1, n, d3] (rank 3 when d3 = 0).
TensorView scratch(const Tensor& t, std::int64_t d0, std::int64_t d1, std::int64_t n, std::int64_t d3) {
  if (d3 == 0) return TensorView(t.data(), t.dtype(), {d0, d1, n});
  return TensorView(t.data(), t.dtype(), {d0, d1, n, d3});
}

int threads_of(const StridedAttentionParams& p) { return p.num_threads > 0 ? p.num_threads : omp_get_max_threads(); }

// acc (contiguous [B·H, N, C]) += the rows start + a·step of part (contiguous [B·H, n, C]).
template <class T>
void add_rows(T* acc, const T* part, std::int64_t BH, std::int64_t N, std::int64_t n, std::int64_t C,
              std::int64_t start, std::int64_t step, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (BH * n * C >= (1 << 15))
  for (std::int64_t row = 0; row < BH * n; ++row) {
    const std::int64_t bh = row / n, a = row % n;
    T* dst = acc + (bh * N + start + a * step) * C;
    const T* src = part + row * C;
    for (std::int64_t c = 0; c < C; ++c) dst[c] += src[c];
  }
}

// Merges a piece's (out_p, lse_p) into the running (out, lse) of its rows through the LSE.
template <class T>
void merge_rows(T* out, T* lse, const T* out_p, const T* lse_p, std::int64_t BH, std::int64_t N, std::int64_t n,
                std::int64_t Dv, std::int64_t start, std::int64_t step, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (BH * n * Dv >= (1 << 15))
  for (std::int64_t row = 0; row < BH * n; ++row) {
    const std::int64_t bh = row / n, a = row % n;
    const T l2 = lse_p[row];
    if (l2 == -std::numeric_limits<T>::infinity()) continue;  // no key of this piece is visible
    const std::int64_t at = bh * N + start + a * step;
    const T l1 = lse[at], m = std::max(l1, l2);
    const T w1 = std::exp(l1 - m), w2 = std::exp(l2 - m), den = w1 + w2;
    const T c1 = w1 / den, c2 = w2 / den;
    T* o = out + at * Dv;
    const T* o2 = out_p + row * Dv;
    for (std::int64_t c = 0; c < Dv; ++c) o[c] = c1 * o[c] + c2 * o2[c];
    lse[at] = m + std::log(den);
  }
}

// Writes the contiguous [B, H, N, C] (or [B, H, N] with C = 0) scratch `src` into the view `dst`.
template <class T>
void store(const TensorView& dst, const T* src, int threads) {
  const std::int64_t B = dst.shape[0], H = dst.shape[1], N = dst.shape[2], C = dst.rank == 4 ? dst.shape[3] : 1;
  const std::int64_t sc = dst.rank == 4 ? dst.strides[3] : 0;
  core::visit_float(dst.dtype, "out", [&](auto d) {
    using E = core::Elem<decltype(d)::value>;
    auto* base = static_cast<typename E::T*>(dst.data);
#pragma omp parallel for schedule(static) num_threads(threads) if (B * H * N * C >= (1 << 15))
    for (std::int64_t row = 0; row < B * H * N; ++row) {
      const std::int64_t b = row / (H * N), h = (row / N) % H, i = row % N;
      auto* o = base + b * dst.strides[0] + h * dst.strides[1] + i * dst.strides[2];
      const T* s = src + row * C;
      for (std::int64_t c = 0; c < C; ++c) {
        if constexpr (std::is_same_v<typename E::T, double>)
          o[c * sc] = static_cast<double>(s[c]);
        else
          o[c * sc] = E::from_f32(static_cast<float>(s[c]));
      }
    }
  });
}

template <class T>
void forward_impl(const SdpaOutputs& o, const TensorView& q, const TensorView& k, const TensorView& v,
                  const StridedAttentionParams& p, const std::vector<Piece>& pieces) {
  const DType acc_dt = q.dtype == DType::f64 ? DType::f64 : DType::f32;
  const std::int64_t B = q.shape[0], Hq = q.shape[1], Nq = q.shape[2], Dv = v.shape[3], BH = B * Hq;
  const int threads = threads_of(p);
  Tensor out(acc_dt, {BH * Nq * Dv + 1}), lse(acc_dt, {BH * Nq + 1});
  Tensor out_p(acc_dt, {BH * Nq * Dv + 1}), lse_p(acc_dt, {BH * Nq + 1});
  T* acc_out = out.ptr<T>();
  T* acc_lse = lse.ptr<T>();
  std::fill(acc_out, acc_out + BH * Nq * Dv, T(0));
  std::fill(acc_lse, acc_lse + BH * Nq, -std::numeric_limits<T>::infinity());
  for (const Piece& piece : pieces) {
    const SdpaOutputs po{scratch(out_p, B, Hq, piece.nq, Dv), scratch(lse_p, B, Hq, piece.nq, 0), {}};
    sdpa_forward(po, rows(q, piece.i0, piece.nq, piece.step), rows(k, piece.j0, piece.nk, piece.step),
                 rows(v, piece.j0, piece.nk, piece.step), piece_params(piece, p));
    merge_rows<T>(acc_out, acc_lse, out_p.ptr<T>(), lse_p.ptr<T>(), BH, Nq, piece.nq, Dv, piece.i0, piece.step,
                  threads);
  }
  store<T>(o.out, acc_out, threads);
  if (o.lse.defined()) store<T>(o.lse, acc_lse, threads);
}

template <class T>
void backward_impl(const SdpaGrads& g, const TensorView& dout, const TensorView& q, const TensorView& k,
                   const TensorView& v, const TensorView& out, const TensorView& lse, const TensorView& dlse,
                   const StridedAttentionParams& p, const std::vector<Piece>& pieces) {
  const DType acc_dt = q.dtype == DType::f64 ? DType::f64 : DType::f32;
  const std::int64_t B = q.shape[0], Hq = q.shape[1], Hkv = k.shape[1], Nq = q.shape[2], Nk = k.shape[2];
  const std::int64_t D = q.shape[3], Dv = v.shape[3];
  const int threads = threads_of(p);
  Tensor dq(acc_dt, {B * Hq * Nq * D + 1}), dk(acc_dt, {B * Hkv * Nk * D + 1}), dv(acc_dt, {B * Hkv * Nk * Dv + 1});
  Tensor dq_p(acc_dt, {B * Hq * Nq * D + 1}), dk_p(acc_dt, {B * Hkv * Nk * D + 1}),
      dv_p(acc_dt, {B * Hkv * Nk * Dv + 1});
  std::fill(dq.ptr<T>(), dq.ptr<T>() + B * Hq * Nq * D, T(0));
  std::fill(dk.ptr<T>(), dk.ptr<T>() + B * Hkv * Nk * D, T(0));
  std::fill(dv.ptr<T>(), dv.ptr<T>() + B * Hkv * Nk * Dv, T(0));
  for (const Piece& piece : pieces) {
    const SdpaGrads pg{
        scratch(dq_p, B, Hq, piece.nq, D), scratch(dk_p, B, Hkv, piece.nk, D), scratch(dv_p, B, Hkv, piece.nk, Dv), {}};
    const auto qrows = [&](const TensorView& t) { return rows(t, piece.i0, piece.nq, piece.step); };
    const auto krows = [&](const TensorView& t) { return rows(t, piece.j0, piece.nk, piece.step); };
    sdpa_backward(pg, qrows(dout), qrows(q), krows(k), krows(v), qrows(out), qrows(lse), piece_params(piece, p),
                  qrows(dlse));
    add_rows<T>(dq.ptr<T>(), dq_p.ptr<T>(), B * Hq, Nq, piece.nq, D, piece.i0, piece.step, threads);
    add_rows<T>(dk.ptr<T>(), dk_p.ptr<T>(), B * Hkv, Nk, piece.nk, D, piece.j0, piece.step, threads);
    add_rows<T>(dv.ptr<T>(), dv_p.ptr<T>(), B * Hkv, Nk, piece.nk, Dv, piece.j0, piece.step, threads);
  }
  store<T>(g.dq, dq.ptr<T>(), threads);
  store<T>(g.dk, dk.ptr<T>(), threads);
  store<T>(g.dv, dv.ptr<T>(), threads);
}

SdpaParams plain_params(const StridedAttentionParams& p) {
  SdpaParams sp;
  sp.scale = p.scale;
  sp.backend = p.backend;
  sp.num_threads = p.num_threads;
  return sp;
}

}  // namespace

void strided_attention_forward(const SdpaOutputs& outputs, const TensorView& q, const TensorView& k,
                               const TensorView& v, const StridedAttentionParams& params) {
  ATTN_CHECK(!outputs.probs.defined(), unsupported, "outputs.probs",
             "is given, expected none (strided attention never forms the [Nq, Nk] probabilities; "
             "use attn::sdpa_forward with the equivalent mask to get them)");
  core::validate_forward(outputs, q, k, v, plain_params(params));
  const std::int64_t off = check_params(q, k, params);
  ATTN_CHECK(params.num_threads >= 0, value, "params.num_threads", "= ", params.num_threads,
             ", expected 0 (all) or >= 1");
  const auto pieces = sparse::make_pieces(q.shape[2], k.shape[2], off, params.stride, params.window,
                                          params.global_tokens, params.causal);
  if (q.dtype == DType::f64)
    forward_impl<double>(outputs, q, k, v, params, pieces);
  else
    forward_impl<float>(outputs, q, k, v, params, pieces);
}

void strided_attention_backward(const SdpaGrads& grads, const TensorView& dout, const TensorView& q,
                                const TensorView& k, const TensorView& v, const TensorView& out, const TensorView& lse,
                                const StridedAttentionParams& params, const TensorView& dlse) {
  ATTN_CHECK(!grads.dbias.defined(), unsupported, "grads.dbias",
             "is given, expected none (strided attention has no additive bias to differentiate)");
  core::validate_backward(grads, dout, q, k, v, out, lse, plain_params(params), dlse);
  const std::int64_t off = check_params(q, k, params);
  ATTN_CHECK(params.num_threads >= 0, value, "params.num_threads", "= ", params.num_threads,
             ", expected 0 (all) or >= 1");
  const auto pieces = sparse::make_pieces(q.shape[2], k.shape[2], off, params.stride, params.window,
                                          params.global_tokens, params.causal);
  if (q.dtype == DType::f64)
    backward_impl<double>(grads, dout, q, k, v, out, lse, dlse, params, pieces);
  else
    backward_impl<float>(grads, dout, q, k, v, out, lse, dlse, params, pieces);
}

}  // namespace attn
