// nn::MultiheadAttention incremental decoding (docs/nn.md, docs/contract.md §12), inference only:
//   self-attention step: project this step's tokens, RoPE at positions len_b + n, append K/V to the
//   KvCache, attn::decode (bottom-right causal: query n of row b sees keys j ≤ len_b + n), out_proj.
//   cross-attention: K/V of the encoder memory projected once (attn::project_cross_kv) and decoded
//   against at every step with every cached key visible.

#include "nn/mha_impl.hpp"

namespace attn::nn {
namespace {

template <class T>
void check_cache(const MultiheadAttention<T>& m, const KvCache& cache, const TensorView& query,
                 const detail::SeqDims& dq) {
  ATTN_CHECK(cache.kv_heads() == m.num_kv_heads(), value, "cache", "has kv_heads = ", cache.kv_heads(),
             ", expected the module's num_kv_heads = ", m.num_kv_heads());
  ATTN_CHECK(cache.head_dim() == m.head_dim() && cache.v_head_dim() == m.head_dim(), value, "cache",
             "has head_dim = ", cache.head_dim(), " and v_head_dim = ", cache.v_head_dim(),
             ", expected the module's head_dim = ", m.head_dim());
  ATTN_CHECK(cache.batch() == dq.B, shape, "cache", "has batch = ", cache.batch(), ", expected the query's batch size ",
             dq.B, " (query has shape ", query.shape_string(), ")",
             detail::layout_hint(query, "query", m.config().batch_first, cache.batch()));
}

}  // namespace

template <class T>
KvCache MultiheadAttention<T>::make_cache(std::int64_t batch, std::int64_t capacity, DType dtype,
                                          KvLayout layout) const {
  KvCacheConfig c;
  c.batch = batch;
  c.kv_heads = Hkv_;
  c.head_dim = hd_;
  c.v_head_dim = hd_;
  c.capacity = capacity;
  c.dtype = dtype;
  c.layout = layout;
  return KvCache(c);
}

template <class T>
Tensor MultiheadAttention<T>::forward_cached(const TensorView& query, const TensorView& key, const TensorView& value,
                                             KvCache& cache, const MhaOptions& options) {
  ATTN_CHECK(config_.stride == 0 && !config_.linear, unsupported, "cache", "is given to a ",
             config_.linear ? "linear" : "strided",
             " module, expected a softmax module without a stride (cached decoding runs attn::decode; linear "
             "attention decodes with attn::linear_attention_step and its (S, z) state)");
  detail::check_inputs(*this, query, key, value);
  const bool bf = config_.batch_first;
  const detail::SeqDims dq = detail::seq_dims(query, bf), dk = detail::seq_dims(key, bf);
  ATTN_CHECK(dk.L == dq.L, value, "key", "has length ", dk.L, ", expected ", dq.L,
             " as query (a decoding step appends the K/V of its own query tokens)");
  ATTN_CHECK(!options.attn_mask.defined() && options.key_lengths.empty() && !options.need_weights, value, "options",
             "set attn_mask, key_lengths or need_weights, expected none of them (they are not supported with a KV "
             "cache: decode is causal bottom-right over each row's cached keys)");
  check_cache(*this, cache, query, dq);

  detail::Projections<T> p = detail::project(*this, query, key, value);
  const TensorView qv = detail::head_view(p.q, p.ldq, dq, Hq_, hd_, bf);
  const TensorView kv = detail::head_view(p.k, p.ldkv, dk, Hkv_, hd_, bf);
  const TensorView vv = detail::head_view(p.v, p.ldkv, dk, Hkv_, hd_, bf);
  if (rotary_) {
    const std::vector<std::int64_t> offsets = cache.lengths();
    rotary_->forward(qv, offsets);
    rotary_->forward(kv, offsets);
  }
  cache.append(kv, vv);
  Tensor ctx(detail::dtype_of<T>(), {dq.B * dq.L, E_});
  DecodeParams dp;
  dp.causal = true;
  dp.window_left = config_.window;  // local: the window counts back from each new token
  decode(detail::head_view(ctx.template ptr<T>(), E_, dq, Hq_, hd_, bf), qv, cache, dp);
  Tensor out = detail::make_tensor(detail::dtype_of<T>(), detail::shape_with_last(query, E_));
  out_proj_.forward(ctx.template ptr<T>(), dq.B * dq.L, E_, out.template ptr<T>(), E_);
  return out;
}

template <class T>
KvCache MultiheadAttention<T>::project_kv(const TensorView& memory, const std::vector<std::int64_t>& src_lengths,
                                          DType dtype) const {
  ATTN_CHECK(config_.stride == 0 && !config_.linear, unsupported, "memory", "is given to a ",
             config_.linear ? "linear" : "strided",
             " module, expected a softmax module without a stride (the cached cross-attention runs attn::decode; "
             "call forward with the memory as key and value instead)");
  ATTN_CHECK(!rotary_, unsupported, "memory",
             "is given to a module with rotary set, expected a module without it (cached cross-attention K/V carry no "
             "RoPE)");
  ATTN_CHECK(kdim_ == vdim_, unsupported, "memory", "feeds both projections, but kdim = ", kdim_, " and vdim = ", vdim_,
             ", expected kdim = vdim (one memory tensor feeds both projections)");
  ATTN_CHECK(memory.rank == 2 || memory.rank == 3, shape, "memory", "has rank ", memory.rank, " (shape ",
             memory.shape_string(), "), expected 3 or 2 (unbatched)");
  ATTN_CHECK(memory.shape[memory.rank - 1] == kdim_, shape, "memory", "has shape ", memory.shape_string(),
             ": its last dim is ", memory.shape[memory.rank - 1], ", expected kdim = ", kdim_);
  TensorView x = memory;  // as [B, Ls, kdim]
  if (memory.rank == 2) {
    x = TensorView(memory.data, memory.dtype, {1, memory.shape[0], memory.shape[1]},
                   {0, memory.strides[0], memory.strides[1]});
  } else if (!config_.batch_first) {
    x = memory.permute({1, 0, 2});
  }
  const DType dt = detail::dtype_of<T>();
  const std::int64_t kvw = Hkv_ * hd_;
  CrossKvSpec spec;
  spec.kv_heads = Hkv_;
  spec.head_dim = hd_;
  spec.v_head_dim = hd_;
  spec.dtype = dtype;
  const TensorView wk(k_proj_.weight(), dt, {kvw, kdim_}), wv(v_proj_.weight(), dt, {kvw, vdim_});
  const TensorView bk = k_proj_.has_bias() ? TensorView(k_proj_.bias(), dt, {kvw}) : TensorView();
  const TensorView bv = v_proj_.has_bias() ? TensorView(v_proj_.bias(), dt, {kvw}) : TensorView();
  return project_cross_kv(x, wk, wv, bk, bv, spec, src_lengths);
}

template <class T>
Tensor MultiheadAttention<T>::forward_cross_cached(const TensorView& query, const KvCache& memory_kv) const {
  ATTN_CHECK(query.dtype == detail::dtype_of<T>(), dtype, "query", "has dtype ", dtype_name(query.dtype), ", expected ",
             dtype_name(detail::dtype_of<T>()));
  ATTN_CHECK((query.rank == 2 || query.rank == 3) && query.shape[query.rank - 1] == E_, shape, "query", "has shape ",
             query.shape_string(), ", expected rank 2 or 3 with last dim embed_dim = ", E_);
  const bool bf = config_.batch_first;
  const detail::SeqDims dq = detail::seq_dims(query, bf);
  check_cache(*this, memory_kv, query, dq);
  const detail::Rows<T> xq = detail::as_rows<T>(query, "query");
  Tensor q(detail::dtype_of<T>(), {xq.M, E_});
  q_proj_.forward(xq.data, xq.M, xq.ld, q.template ptr<T>(), E_);
  Tensor ctx(detail::dtype_of<T>(), {xq.M, E_});
  DecodeParams dp;
  dp.causal = false;
  decode(detail::head_view(ctx.template ptr<T>(), E_, dq, Hq_, hd_, bf),
         detail::head_view(q.template ptr<T>(), E_, dq, Hq_, hd_, bf), memory_kv, dp);
  Tensor out = detail::make_tensor(detail::dtype_of<T>(), detail::shape_with_last(query, E_));
  out_proj_.forward(ctx.template ptr<T>(), xq.M, E_, out.template ptr<T>(), E_);
  return out;
}

#define ATTN_NN_INSTANTIATE(T)                                                                                   \
  template KvCache MultiheadAttention<T>::make_cache(std::int64_t, std::int64_t, DType, KvLayout) const;         \
  template Tensor MultiheadAttention<T>::forward_cached(const TensorView&, const TensorView&, const TensorView&, \
                                                        KvCache&, const MhaOptions&);                            \
  template KvCache MultiheadAttention<T>::project_kv(const TensorView&, const std::vector<std::int64_t>&, DType) \
      const;                                                                                                     \
  template Tensor MultiheadAttention<T>::forward_cross_cached(const TensorView&, const KvCache&) const;
ATTN_NN_INSTANTIATE(float)
ATTN_NN_INSTANTIATE(double)
#undef ATTN_NN_INSTANTIATE

}  // namespace attn::nn
