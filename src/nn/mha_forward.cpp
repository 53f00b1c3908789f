// nn::MultiheadAttention forward (docs/nn.md), in four passes:
//   1. q, k, v = projections of query/key/value (one GEMM per fusion group, OpenBLAS)
//   2. RoPE on q and k in place (when configured)
//   3. ctx = attn::sdpa_forward on strided [B, H, L, hd] views of the projection buffers (no copies);
//      lse kept for backward, probs materialised only for need_weights
//   4. out = ctx·W_oᵀ + b_o
// Rows of every [B·L, ·] buffer are in the input's memory order, so (B, L, E), (L, B, E) and (L, E)
// need no transposes; only the SDPA views' strides differ.

#include "nn/mha_impl.hpp"

namespace attn::nn {
namespace {

// need_weights: probs [B, Hq, Lq, Lk] -> [B, Lq, Lk] (mean over heads) or kept; unbatched drops B.
template <class T>
Tensor attention_weights(const Tensor& probs, bool average, bool batched) {
  const std::int64_t B = probs.view().shape[0], H = probs.view().shape[1], Lq = probs.view().shape[2],
                     Lk = probs.view().shape[3];
  const DType dt = detail::dtype_of<T>();
  const T* p = probs.ptr<T>();
  if (!average) {
    Tensor w = batched ? Tensor(dt, {B, H, Lq, Lk}) : Tensor(dt, {H, Lq, Lk});
    std::copy(p, p + probs.numel(), w.ptr<T>());
    return w;
  }
  Tensor w = batched ? Tensor(dt, {B, Lq, Lk}) : Tensor(dt, {Lq, Lk});
  T* o = w.ptr<T>();
  const std::int64_t plane = Lq * Lk;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t e = 0; e < plane; ++e) {
      T sum = 0;
      for (std::int64_t h = 0; h < H; ++h) sum += p[(b * H + h) * plane + e];
      o[b * plane + e] = sum / static_cast<T>(H);
    }
  return w;
}

}  // namespace

template <class T>
MhaOutput MultiheadAttention<T>::forward(const TensorView& query, const TensorView& key, const TensorView& value,
                                         const MhaOptions& options) {
  return forward_impl(query, key, value, options, nullptr);
}

template <class T>
void MultiheadAttention<T>::forward_into(const TensorView& query, const TensorView& key, const TensorView& value,
                                         const MhaOptions& options, T* out) {
  ATTN_CHECK(out != nullptr, value, "out", "is null, expected a [Mq, E] buffer");
  ATTN_CHECK(!options.need_weights, unsupported, "need_weights",
             "is true in forward_into, expected false (forward returns the weights)");
  // backward reads the inputs again (the dW GEMMs): out must not overwrite them.
  const char* o0 = reinterpret_cast<const char*>(out);
  const char* o1 = o0 + query.numel() * static_cast<std::int64_t>(sizeof(T));
  for (const TensorView* t : {&query, &key, &value}) {
    const auto [lo, hi] = t->byte_span();
    ATTN_CHECK(!(o0 < hi && lo < o1), value, "out",
               "overlaps the memory of query, key or value, expected a separate [Mq, E] buffer (backward reads the "
               "inputs again)");
  }
  if (!scratch_) scratch_ = std::make_unique<Scratch>();
  forward_impl(query, key, value, options, out);
}

template <class T>
MhaOutput MultiheadAttention<T>::forward_impl(const TensorView& query, const TensorView& key, const TensorView& value,
                                              const MhaOptions& options, T* out) {
  recycle_saved();
  detail::check_inputs(*this, query, key, value);
  const bool bf = config_.batch_first;
  const detail::SeqDims dq = detail::seq_dims(query, bf), dk = detail::seq_dims(key, bf);
  detail::check_options(options, query, bf, dq, dk, Hq_);

  auto s = std::make_unique<Saved>();
  Scratch* kept = scratch_.get();  // buffers kept between steps (forward_into), or none
  s->proj = detail::project(*this, query, key, value, kept ? &kept->qbuf : nullptr,
                            kept ? &kept->kvbuf : nullptr);  // 1.
  detail::Projections<T>& p = s->proj;
  const TensorView qv = detail::head_view(p.q, p.ldq, dq, Hq_, hd_, bf);
  const TensorView kv = detail::head_view(p.k, p.ldkv, dk, Hkv_, hd_, bf);
  const TensorView vv = detail::head_view(p.v, p.ldkv, dk, Hkv_, hd_, bf);
  if (rotary_) {  // 2.
    rotary_->forward(qv, options.positions);
    rotary_->forward(kv, options.positions);
  }

  if (config_.stride >= 1) {  // strided sparse attention (docs/sparse_attention.md): no mask, no weights
    ATTN_CHECK(!options.attn_mask.defined(), unsupported, "attn_mask",
               "is given, but the module is strided (stride = ", config_.stride,
               "), expected none (its pattern is its mask; use a dense module with the equivalent mask)");
    ATTN_CHECK(!options.need_weights, unsupported, "need_weights",
               "is true, but the module is strided, expected false (strided attention never forms the weights)");
    StridedAttentionParams& st = s->strided;
    st.stride = config_.stride;
    st.window = std::max<std::int64_t>(config_.window, 0);
    st.global_tokens = config_.global_tokens;
    st.causal = options.is_causal;
    st.alignment = options.causal_alignment;
    st.k_lengths = options.key_lengths;
  }
  if (config_.linear) {  // linear attention (docs/linear_attention.md): no mask, no weights
    ATTN_CHECK(!options.attn_mask.defined(), unsupported, "attn_mask",
               "is given, but the module is linear, expected none (linear attention can only drop whole keys: use "
               "key_lengths or is_causal, or a softmax module for other masks)");
    ATTN_CHECK(!options.need_weights, unsupported, "need_weights",
               "is true, but the module is linear, expected false (linear attention never forms the weights)");
    LinearAttentionParams& lp = s->linear;
    lp.feature_map = config_.feature_map;
    lp.projection = projection_.view();
    lp.eps = config_.linear_eps;
    lp.mask.causal = options.is_causal;
    lp.mask.alignment = options.causal_alignment.value_or(Alignment::top_left);
    lp.mask.k_lengths = options.key_lengths;
    s->den = Tensor(DType::f32, {dq.B, Hq_, dq.L});
  }
  SdpaParams& sp = s->params;  // 3.
  sp.mask.causal = options.is_causal;
  sp.mask.alignment = options.causal_alignment.value_or(Alignment::top_left);
  sp.mask.k_lengths = options.key_lengths;
  if (config_.window >= 0 && config_.stride == 0) {
    ATTN_CHECK(dq.L == dk.L || options.causal_alignment.has_value(), value, "causal_alignment",
               "is not set, but the module is local (window = ", config_.window, ") with Lq = ", dq.L, " ≠ Lk = ", dk.L,
               ", expected top_left or bottom_right (which end of the key sequence the window lines up with)");
    sp.mask.window_left = sp.mask.window_right = config_.window;
  }
  if (options.attn_mask.defined()) {
    if (is_floating(options.attn_mask.dtype))
      sp.mask.bias = options.attn_mask;
    else
      sp.mask.bool_mask = options.attn_mask;
  }
  sp.dropout_p = training_ ? config_.dropout : 0.0;
  sp.dropout_seed = config_.seed;
  sp.dropout_offset = options.dropout_offset;
  sp.probs_kind = ProbsKind::post_dropout;
  const DType ldt = lse_dtype(detail::dtype_of<T>());  // f64 for the double module
  s->ctx = kept ? detail::take(kept->ctx, detail::dtype_of<T>(), {dq.B * dq.L, E_})
                : Tensor(detail::dtype_of<T>(), {dq.B * dq.L, E_});
  s->lse = kept ? detail::take(kept->lse, ldt, {dq.B, Hq_, dq.L}) : Tensor(ldt, {dq.B, Hq_, dq.L});
  Tensor probs;
  if (options.need_weights) probs = Tensor(detail::dtype_of<T>(), {dq.B, Hq_, dq.L, dk.L});
  const TensorView ctx = detail::head_view(s->ctx.template ptr<T>(), E_, dq, Hq_, hd_, bf);
  if (config_.linear)
    linear_attention_forward({ctx, s->den}, qv, kv, vv, s->linear);
  else if (config_.stride >= 1)
    strided_attention_forward({ctx, s->lse, {}}, qv, kv, vv, s->strided);
  else
    sdpa_forward({ctx, s->lse, options.need_weights ? probs.view() : TensorView()}, qv, kv, vv, sp);
  if (options.need_weights && sp.dropout_p > 0) {
    // The gradient through the returned (post-dropout) weights also needs the softmax before
    // dropout (mha_backward.cpp): the same call again with pre-dropout probs, its ctx discarded.
    SdpaParams pre = sp;
    pre.probs_kind = ProbsKind::pre_dropout;
    Tensor ctx2(detail::dtype_of<T>(), {dq.B * dq.L, E_}), lse2(lse_dtype(detail::dtype_of<T>()), {dq.B, Hq_, dq.L});
    s->probs_pre = Tensor(detail::dtype_of<T>(), {dq.B, Hq_, dq.L, dk.L});
    sdpa_forward({detail::head_view(ctx2.template ptr<T>(), E_, dq, Hq_, hd_, bf), lse2, s->probs_pre.view()}, qv, kv,
                 vv, pre);
  }

  MhaOutput r;  // 4.
  s->out_shape = detail::shape_with_last(query, E_);
  if (!out) {
    r.out = detail::make_tensor(detail::dtype_of<T>(), s->out_shape);
    out = r.out.template ptr<T>();
  }
  const T* ctx_rows = s->ctx.template ptr<T>();
  out_proj_.forward(ctx_rows, dq.B * dq.L, E_, out, E_, detail::round_once(ctx_rows, dq.B * dq.L, E_, E_, s->ctx16));
  if (options.need_weights) {
    r.weights = attention_weights<T>(probs, options.average_attn_weights, dq.batched);
    const TensorView w = r.weights.view();
    s->weights_shape.assign(w.shape.begin(), w.shape.begin() + w.rank);
    s->weights_averaged = options.average_attn_weights;
    s->probs = std::move(probs);
  }

  s->query = query;
  s->key = key;
  s->value = value;
  s->positions = options.positions;
  saved_ = std::move(s);
  return r;
}

template MhaOutput MultiheadAttention<float>::forward(const TensorView&, const TensorView&, const TensorView&,
                                                      const MhaOptions&);
template MhaOutput MultiheadAttention<double>::forward(const TensorView&, const TensorView&, const TensorView&,
                                                       const MhaOptions&);
template void MultiheadAttention<float>::forward_into(const TensorView&, const TensorView&, const TensorView&,
                                                      const MhaOptions&, float*);
template void MultiheadAttention<double>::forward_into(const TensorView&, const TensorView&, const TensorView&,
                                                       const MhaOptions&, double*);
template MhaOutput MultiheadAttention<float>::forward_impl(const TensorView&, const TensorView&, const TensorView&,
                                                           const MhaOptions&, float*);
template MhaOutput MultiheadAttention<double>::forward_impl(const TensorView&, const TensorView&, const TensorView&,
                                                            const MhaOptions&, double*);

}  // namespace attn::nn
