#pragma once
// Internals shared by the MultiheadAttention sources: layouts, the strided [B, H, L, hd] views
// into the projection buffers, input validation, the projections, and what forward keeps for
// backward (docs/nn.md).

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/nn/multihead_attention.hpp"
#include "nn/gemm.hpp"
#include "nn/gemm_bf16.hpp"
#include "nn/rows.hpp"

namespace attn::nn::detail {

/// Batch size and length of a module input: (B, L, E) when batch_first, (L, B, E) otherwise,
/// (L, E) unbatched (B = 1). Rows of its [B·L, E] matrix are in memory order: b·L + l when batch
/// first (or unbatched), l·B + b otherwise.
struct SeqDims {
  std::int64_t B = 1, L = 0;
  bool batched = false;
};

inline SeqDims seq_dims(const TensorView& x, bool batch_first) {
  SeqDims d;
  d.batched = x.rank == 3;
  if (x.rank == 2)
    d.L = x.shape[0];
  else if (batch_first)
    d = {x.shape[0], x.shape[1], true};
  else
    d = {x.shape[1], x.shape[0], true};
  return d;
}

/// The logical [B, H, L, hd] view of heads stored at columns h·hd of a row-major [B·L, ld] buffer.
template <class T>
TensorView head_view(T* p, std::int64_t ld, const SeqDims& d, std::int64_t H, std::int64_t hd, bool batch_first) {
  const bool bl = batch_first || !d.batched;  // rows b·L + l
  return TensorView(p, dtype_of<T>(), {d.B, H, d.L, hd}, {bl ? d.L * ld : ld, hd, bl ? ld : d.B * ld, 1});
}

/// The batch size of a rank-3 x read in the other layout (0 for rank 2).
inline std::int64_t other_batch(const TensorView& x, bool batch_first) {
  return x.rank != 3 ? 0 : batch_first ? x.shape[1] : x.shape[0];
}

/// "; x has shape [...]: it looks like (L, B, E) but batch_first = true ..." when reading x in the
/// other layout would make its batch size equal `expected`; else "".
inline std::string layout_hint(const TensorView& x, const char* name, bool batch_first, std::int64_t expected) {
  if (x.rank != 3) return "";
  if (other_batch(x, batch_first) != expected) return "";
  return ::attn::detail::concat("; ", name, " has shape ", x.shape_string(), ": it looks like ",
                                batch_first ? "(L, B, E) but batch_first = true, which reads (B, L, E)"
                                            : "(B, L, E) but batch_first = false, which reads (L, B, E)");
}

inline bool same_view(const TensorView& a, const TensorView& b) {
  if (a.data != b.data || a.dtype != b.dtype || a.rank != b.rank) return false;
  for (int i = 0; i < a.rank; ++i)
    if (a.shape[i] != b.shape[i] || (a.shape[i] > 1 && a.strides[i] != b.strides[i])) return false;
  return true;
}

/// Under bf16 matmuls (float modules): rows [M, cols] (row stride ld) rounded once into dst
/// (packed, [M, cols]), returned for the Linears' forward and backward GEMMs; else null, dst empty.
template <class T>
const std::uint16_t* round_once(const T* data, std::int64_t M, std::int64_t cols, std::int64_t ld,
                                std::vector<std::uint16_t>& dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (float32_matmul_precision() != MatmulPrecision::bf16) return nullptr;
    dst.resize(static_cast<std::size_t>(M * cols));
    round_rows_to_bf16(data, M, cols, ld, dst.data(), cols);
    return dst.data();
  } else {
    (void)data, (void)M, (void)cols, (void)ld, (void)dst;
    return nullptr;
  }
}

/// Which inputs share one projection GEMM.
enum class Fusion { none, kv, qkv };

/// The q, k, v projections of one call: q in [Mq, ldq] rows (columns h·hd), k and v in [Mk, ldkv]
/// rows; with Fusion::qkv all three live in one [M, E + 2·Hkv·hd] buffer.
template <class T>
struct Projections {
  Fusion fusion = Fusion::none;
  SeqDims dq, dk;
  Rows<T> xq, xk, xv;
  Tensor qbuf, kvbuf;
  // Under bf16 matmuls (float only): each projected input rounded to bf16 once ([M, cols] packed),
  // for the forward GEMM and again for the backward's dW (empty otherwise, or for an input that is
  // the same tensor as one before it: fused QKV keeps xq16, fused KV xk16).
  std::vector<std::uint16_t> xq16, xk16, xv16;
  T *q = nullptr, *k = nullptr, *v = nullptr;
  std::int64_t ldq = 0, ldkv = 0;
};

}  // namespace attn::nn::detail

namespace attn::nn {

/// What forward keeps for backward.
template <class T>
struct MultiheadAttention<T>::Saved {
  detail::Projections<T> proj;   // post-RoPE q and k, v
  TensorView query, key, value;  // shapes of the inputs (their gradients have them)
  Tensor ctx;                    // [Mq, E] attention output before out_proj, rows as query
  std::vector<std::uint16_t> ctx16;  // bf16 matmuls: ctx rounded once, for out_proj's forward and dW
  Tensor lse;                    // [B, Hq, Lq], lse_dtype of the module's dtype
  SdpaParams params;
  StridedAttentionParams strided;  // used when config.stride ≥ 1
  LinearAttentionParams linear;    // used when config.linear
  Tensor den;                      // linear: [B, Hq, Lq] f32 denominators
  std::vector<std::int64_t> positions;
  std::vector<std::int64_t> out_shape;
  // need_weights: the per-head weights as returned (post-dropout) [B, Hq, Lq, Lk] and, when
  // dropout was active, the softmax before dropout (else empty: it equals probs).
  Tensor probs, probs_pre;
  std::vector<std::int64_t> weights_shape;
  bool weights_averaged = true;
};

/// Buffers kept between calls of equal sizes (MultiheadAttention::forward_into): the forward's
/// projections, ctx and lse move into Saved and back after backward; backward's gradients stay.
template <class T>
struct MultiheadAttention<T>::Scratch {
  Tensor qbuf, kvbuf, ctx, lse;  // forward's (empty while a Saved holds them)
  Tensor dctx, dq, dk, dv;       // backward's
};

}  // namespace attn::nn

namespace attn::nn::detail {

/// `kept` moved out when it has this dtype and shape (buffers kept between steps), else a new
/// tensor; `kept` is empty afterwards either way.
inline Tensor take(Tensor& kept, DType dtype, std::initializer_list<std::int64_t> shape) {
  Tensor t = std::move(kept);
  kept = Tensor();
  bool same = t.data() && t.dtype() == dtype && t.view().rank == static_cast<int>(shape.size());
  int a = 0;
  for (const std::int64_t n : shape) same = same && t.view().shape[a++] == n;
  return same ? std::move(t) : Tensor(dtype, shape);
}

/// dtype, rank, widths, batch sizes and lengths of query/key/value (attn::Error naming the input).
template <class T>
void check_inputs(const MultiheadAttention<T>& m, const TensorView& query, const TensorView& key,
                  const TensorView& value);
/// attn_mask (dtype, broadcast to [B, Hq, Lq, Lk]), key_lengths, causal alignment, positions.
void check_options(const MhaOptions& o, const TensorView& query, bool batch_first, const SeqDims& dq, const SeqDims& dk,
                   std::int64_t Hq);
/// Projects query/key/value (one GEMM per fusion group) into fresh buffers, or into `qkept` /
/// `kvkept` when given and of the right size (take above); applies no RoPE.
template <class T>
Projections<T> project(const MultiheadAttention<T>& m, const TensorView& query, const TensorView& key,
                       const TensorView& value, Tensor* qkept = nullptr, Tensor* kvkept = nullptr);
/// A row-major tensor of `shape`.
Tensor make_tensor(DType dtype, const std::vector<std::int64_t>& shape);
/// shape of x with the last axis replaced by `last`.
std::vector<std::int64_t> shape_with_last(const TensorView& x, std::int64_t last);

}  // namespace attn::nn::detail
