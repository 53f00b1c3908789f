// nn::MultiheadAttention: construction (parameter storage, Xavier-uniform init), parameter names,
// input validation and the q/k/v projections shared by forward, backward and the cached paths
// (docs/nn.md). Forward/backward are in mha_forward.cpp / mha_backward.cpp, decoding in
// mha_cached.cpp.

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attn/error.hpp"
#include "nn/bf16_weights.hpp"
#include "nn/init.hpp"
#include "nn/mha_impl.hpp"

namespace attn::nn {
namespace {

std::int64_t checked_config(const MhaConfig& c) {
  ATTN_CHECK(c.embed_dim >= 1, value, "embed_dim", "= ", c.embed_dim, ", expected ≥ 1");
  ATTN_CHECK(c.num_heads >= 1, value, "num_heads", "= ", c.num_heads, ", expected ≥ 1");
  ATTN_CHECK(c.embed_dim % c.num_heads == 0, value, "num_heads", "= ", c.num_heads,
             ", expected a divisor of embed_dim = ", c.embed_dim, " (head_dim = embed_dim / num_heads)");
  const std::int64_t Hkv = c.num_kv_heads == 0 ? c.num_heads : c.num_kv_heads;
  ATTN_CHECK(Hkv >= 1 && c.num_heads % Hkv == 0, value, "num_kv_heads", "= ", c.num_kv_heads,
             ", expected a divisor of num_heads = ", c.num_heads,
             " (each kv head serves num_heads / num_kv_heads query heads)");
  ATTN_CHECK(c.kdim >= 0 && c.vdim >= 0, value, "kdim", "= ", c.kdim, ", vdim = ", c.vdim,
             ", expected ≥ 0 (0 = embed_dim)");
  ATTN_CHECK(c.dropout >= 0.0 && c.dropout < 1.0, value, "dropout", "= ", c.dropout, ", expected a value in [0, 1)");
  ATTN_CHECK(c.window >= -1, value, "window", "= ", c.window, ", expected ≥ 0 (local attention) or −1 (none)");
  ATTN_CHECK(c.stride >= 0, value, "stride", "= ", c.stride, ", expected ≥ 1 (strided attention) or 0 (none)");
  ATTN_CHECK(c.global_tokens >= 0 && (c.global_tokens == 0 || c.stride >= 1), value, "global_tokens", "= ",
             c.global_tokens, " with stride = ", c.stride, ", expected 0, or ≥ 0 with strided attention (stride ≥ 1)");
  ATTN_CHECK(c.stride == 0 || c.dropout == 0.0, value, "dropout", "= ", c.dropout, " with stride = ", c.stride,
             ", expected 0 (strided attention never forms the probabilities to drop)");
  if (c.linear) {
    ATTN_CHECK(c.stride == 0 && c.window == -1, value, "linear", "is true with stride = ", c.stride, " and window = ",
               c.window, ", expected stride 0 and window −1 (linear attention sums over all visible keys at once)");
    ATTN_CHECK(c.dropout == 0.0, value, "dropout", "= ", c.dropout,
               " with linear = true, expected 0 (linear attention never forms the probabilities to drop)");
    ATTN_CHECK(c.num_features >= 0, value, "num_features", "= ", c.num_features, ", expected ≥ 1, or 0 (the default)");
    ATTN_CHECK(c.feature_map == FeatureMap::favor || c.num_features == 0, value, "num_features", "= ", c.num_features,
               " with feature_map elu, expected 0 (elu has head_dim features; num_features is FAVOR+'s m)");
  }
  return Hkv;
}

// Sizes of the parameter blocks, in storage order: W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o.
struct Blocks {
  std::int64_t wq, wk, wv, wo, bq, bk, bv, bo;
  std::int64_t total() const { return wq + wk + wv + wo + bq + bk + bv + bo; }
};

Blocks blocks(const MhaConfig& c, std::int64_t Hkv) {
  const std::int64_t E = c.embed_dim, kv = Hkv * (E / c.num_heads);
  const std::int64_t kdim = c.kdim ? c.kdim : E, vdim = c.vdim ? c.vdim : E;
  const std::int64_t nb = c.bias ? 1 : 0;
  return {E * E, kv * kdim, kv * vdim, E * E, nb * E, nb * kv, nb * kv, nb * E};
}

template <class T>
Tensor zeroed(const MhaConfig& c, std::int64_t Hkv) {
  const std::int64_t n = blocks(c, Hkv).total();
  Tensor t(sizeof(T) == 4 ? DType::f32 : DType::f64, {n});
  std::memset(t.data(), 0, static_cast<std::size_t>(n) * sizeof(T));
  return t;
}

// Pointer to block `index` (0..7) of a parameter buffer.
template <class T>
T* block(const Tensor& t, const Blocks& b, int index) {
  const std::int64_t sizes[] = {b.wq, b.wk, b.wv, b.wo, b.bq, b.bk, b.bv, b.bo};
  std::int64_t off = 0;
  for (int i = 0; i < index; ++i) off += sizes[i];
  return sizes[index] ? t.ptr<T>() + off : nullptr;
}

}  // namespace

template <class T>
MultiheadAttention<T>::MultiheadAttention(const MhaConfig& config)
    : config_(config),
      E_(config.embed_dim),
      Hq_(config.num_heads),
      Hkv_(checked_config(config)),
      hd_(config.embed_dim / config.num_heads),
      kdim_(config.kdim ? config.kdim : config.embed_dim),
      vdim_(config.vdim ? config.vdim : config.embed_dim),
      params_(zeroed<T>(config, Hkv_)),
      grads_(zeroed<T>(config, Hkv_)),
      q_proj_(E_, E_, block<T>(params_, blocks(config, Hkv_), 0), block<T>(grads_, blocks(config, Hkv_), 0),
              block<T>(params_, blocks(config, Hkv_), 4), block<T>(grads_, blocks(config, Hkv_), 4)),
      k_proj_(kdim_, Hkv_ * hd_, block<T>(params_, blocks(config, Hkv_), 1), block<T>(grads_, blocks(config, Hkv_), 1),
              block<T>(params_, blocks(config, Hkv_), 5), block<T>(grads_, blocks(config, Hkv_), 5)),
      v_proj_(vdim_, Hkv_ * hd_, block<T>(params_, blocks(config, Hkv_), 2), block<T>(grads_, blocks(config, Hkv_), 2),
              block<T>(params_, blocks(config, Hkv_), 6), block<T>(grads_, blocks(config, Hkv_), 6)),
      out_proj_(E_, E_, block<T>(params_, blocks(config, Hkv_), 3), block<T>(grads_, blocks(config, Hkv_), 3),
                block<T>(params_, blocks(config, Hkv_), 7), block<T>(grads_, blocks(config, Hkv_), 7)) {
  config_.num_kv_heads = Hkv_;
  config_.kdim = kdim_;
  config_.vdim = vdim_;
  if (config.rotary) rotary_.emplace(hd_, *config.rotary);
  if (config.linear && config.feature_map == FeatureMap::favor) {
    const std::int64_t m =
        config.num_features > 0
            ? config.num_features
            : std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(static_cast<double>(hd_) *
                                                                              std::log(static_cast<double>(hd_)))));
    projection_ = Tensor(DType::f32, {m, hd_});
    favor_projection(projection_, config.seed);
  }
  // One kept bf16 copy of W_q, W_k, W_v, W_o (contiguous): the fused QKV / KV projections and the
  // per-projection backward GEMMs cut their W out of it (docs/nn.md "bf16 weight copies").
  const Blocks b = blocks(config, Hkv_);
  const auto w16 = std::make_shared<Bf16WeightCopy>();
  for (Linear<T>* l : {&q_proj_, &k_proj_, &v_proj_, &out_proj_})
    l->share_bf16_weights(w16, params_.ptr<T>(), b.wq + b.wk + b.wv + b.wo);
  const Linear<T>* lins[] = {&q_proj_, &k_proj_, &v_proj_, &out_proj_};
  for (int i = 0; i < 4; ++i) {
    const Linear<T>& l = *lins[i];
    detail::fill_uniform(l.weight(), l.out_features() * l.in_features(),
                         detail::xavier_bound(l.in_features(), l.out_features()),
                         config.seed * 4 + static_cast<std::uint64_t>(i));
  }
}

template <class T>
MultiheadAttention<T>::~MultiheadAttention() = default;
template <class T>
void MultiheadAttention<T>::release_saved() {
  saved_.reset();
  scratch_.reset();
}
template <class T>
void MultiheadAttention<T>::recycle_saved() {
  if (saved_ && scratch_) {
    Scratch& k = *scratch_;
    k.qbuf = std::move(saved_->proj.qbuf);
    k.kvbuf = std::move(saved_->proj.kvbuf);
    k.ctx = std::move(saved_->ctx);
    k.lse = std::move(saved_->lse);
  }
  saved_.reset();
}
template <class T>
MultiheadAttention<T>::MultiheadAttention(MultiheadAttention&&) noexcept = default;
template <class T>
MultiheadAttention<T>& MultiheadAttention<T>::operator=(MultiheadAttention&&) noexcept = default;

template <class T>
std::vector<Child> MultiheadAttention<T>::children() const {
  return {{"q_proj", &q_proj_}, {"k_proj", &k_proj_}, {"v_proj", &v_proj_}, {"out_proj", &out_proj_}};
}

template <class T>
std::vector<Buffer> MultiheadAttention<T>::buffers() const {
  if (!projection_.data()) return {};
  return {{"projection", projection_.view()}};
}

namespace detail {

Tensor make_tensor(DType dtype, const std::vector<std::int64_t>& s) {
  switch (s.size()) {
    case 1: return Tensor(dtype, {s[0]});
    case 2: return Tensor(dtype, {s[0], s[1]});
    case 3: return Tensor(dtype, {s[0], s[1], s[2]});
    default: return Tensor(dtype, {s[0], s[1], s[2], s[3]});
  }
}

std::vector<std::int64_t> shape_with_last(const TensorView& x, std::int64_t last) {
  std::vector<std::int64_t> s(x.shape.begin(), x.shape.begin() + x.rank);
  s.back() = last;
  return s;
}

template <class T>
void check_inputs(const MultiheadAttention<T>& m, const TensorView& query, const TensorView& key,
                  const TensorView& value) {
  const MhaConfig& c = m.config();
  const std::pair<const TensorView*, const char*> in[] = {{&query, "query"}, {&key, "key"}, {&value, "value"}};
  const std::int64_t widths[] = {c.embed_dim, c.kdim, c.vdim};
  const char* width_names[] = {"embed_dim", "kdim", "vdim"};
  for (int i = 0; i < 3; ++i) {
    const TensorView& x = *in[i].first;
    const char* name = in[i].second;
    ATTN_CHECK(x.dtype == dtype_of<T>(), dtype, name, "has dtype ", dtype_name(x.dtype), ", expected ",
               dtype_name(dtype_of<T>()), " (the module's dtype)");
    ATTN_CHECK(x.rank == 2 || x.rank == 3, shape, name, "has rank ", x.rank, " (shape ", x.shape_string(), "), expected 3 ",
               c.batch_first ? "(B, L, E)" : "(L, B, E)", " or 2 (L, E) unbatched");
    ATTN_CHECK(x.rank == query.rank, shape, name, "has rank ", x.rank, " (shape ", x.shape_string(), "), expected rank ",
               query.rank, " as query (shape ", query.shape_string(), "; batched and unbatched inputs cannot be mixed)");
    ATTN_CHECK(x.shape[x.rank - 1] == widths[i], shape, name, "has shape ", x.shape_string(), ": its last dim is ",
               x.shape[x.rank - 1], ", expected ", width_names[i], " = ", widths[i]);
  }
  const SeqDims dq = seq_dims(query, c.batch_first), dk = seq_dims(key, c.batch_first),
                dv = seq_dims(value, c.batch_first);
  ATTN_CHECK(dk.B == dq.B, shape, "key", "has batch size ", dk.B, " (shape ", key.shape_string(), "), expected ", dq.B,
             " as query (query has ", dq.B, ", shape ", query.shape_string(), ")",
             layout_hint(key, "key", c.batch_first, other_batch(query, c.batch_first)));
  ATTN_CHECK(dv.B == dq.B, shape, "value", "has batch size ", dv.B, " (shape ", value.shape_string(), "), expected ", dq.B,
             " as query (query has ", dq.B, ", shape ", query.shape_string(), ")",
             layout_hint(value, "value", c.batch_first, other_batch(query, c.batch_first)));
  ATTN_CHECK(dv.L == dk.L, shape, "value", "has length ", dv.L, " (shape ", value.shape_string(), "), expected ", dk.L,
             " as key (key has ", dk.L, ", shape ", key.shape_string(), "; key and value must have the same length)");
}

void check_options(const MhaOptions& o, const TensorView& query, bool batch_first, const SeqDims& dq, const SeqDims& dk,
                   std::int64_t Hq) {
  if (o.attn_mask.defined()) {
    const TensorView& m = o.attn_mask;
    ATTN_CHECK(m.dtype == DType::boolean || m.dtype == DType::i8 || is_floating(m.dtype), dtype, "attn_mask", "has dtype ",
               dtype_name(m.dtype), ", expected bool/i8 (true = attend) or a float dtype (added to the scores)");
    const std::int64_t target[] = {dq.B, Hq, dq.L, dk.L};
    bool ok = m.rank >= 1 && m.rank <= 4;
    for (int a = 0; ok && a < m.rank; ++a) {
      const std::int64_t t = target[4 - m.rank + a];
      ok = m.shape[a] == 1 || m.shape[a] == t;
    }
    ATTN_CHECK(ok, shape, "attn_mask", "has shape ", m.shape_string(),
               ", which does not broadcast to [B, num_heads, Lq, Lk] = [", dq.B, ", ", Hq, ", ", dq.L, ", ", dk.L,
               "], expected a shape that does (a per-batch mask is [B, 1, Lq, Lk])");
  }
  if (!o.key_lengths.empty()) {
    ATTN_CHECK(static_cast<std::int64_t>(o.key_lengths.size()) == dq.B, shape, "key_lengths", "has ", o.key_lengths.size(),
               " entries, expected one per batch row (B = ", dq.B, ")",
               layout_hint(query, "query", batch_first, static_cast<std::int64_t>(o.key_lengths.size())));
    for (std::size_t b = 0; b < o.key_lengths.size(); ++b)
      ATTN_CHECK(o.key_lengths[b] >= 0 && o.key_lengths[b] <= dk.L, value, "key_lengths", "key_lengths[", b,
                 "] = ", o.key_lengths[b], ", expected 0 ≤ length ≤ Lk = ", dk.L);
  }
  ATTN_CHECK(!o.is_causal || dq.L == dk.L || o.causal_alignment.has_value(), value, "causal_alignment",
             "is not set, but is_causal with Lq = ", dq.L, " ≠ Lk = ", dk.L,
             ", expected top_left (query i sees keys j ≤ i) or bottom_right (j ≤ i + Lk − Lq)");
  ATTN_CHECK(o.positions.size() <= 1 || static_cast<std::int64_t>(o.positions.size()) == dq.B, shape, "positions", "has ",
             o.positions.size(), " entries, expected 0, 1 or B = ", dq.B);
}

template <class T>
Projections<T> project(const MultiheadAttention<T>& m, const TensorView& query, const TensorView& key,
                       const TensorView& value, Tensor* qkept, Tensor* kvkept) {
  const auto buffer = [](Tensor* kept, std::int64_t rows, std::int64_t cols) {
    return kept ? take(*kept, dtype_of<T>(), {rows, cols}) : Tensor(dtype_of<T>(), {rows, cols});
  };
  const MhaConfig& c = m.config();
  const std::int64_t E = m.embed_dim(), kv = m.num_kv_heads() * m.head_dim();
  Projections<T> p;
  p.dq = seq_dims(query, c.batch_first);
  p.dk = seq_dims(key, c.batch_first);
  p.fusion = same_view(query, key) && same_view(key, value) ? Fusion::qkv
             : same_view(key, value)                        ? Fusion::kv
                                                            : Fusion::none;
  p.xq = as_rows<T>(query, "query");
  if (p.fusion == Fusion::qkv) {
    // One GEMM against the rows [W_q; W_k; W_v] (contiguous in storage) and the biases [b_q; b_k; b_v].
    const std::int64_t Etot = E + 2 * kv;
    p.qbuf = buffer(qkept, p.xq.M, Etot);
    const Linear<T>& lq = m.q_proj();
    Linear<T> fused(E, Etot, lq.weight(), lq.weight_grad(), lq.bias(), lq.bias_grad());
    fused.share_bf16_weights(lq);
    fused.forward(p.xq.data, p.xq.M, p.xq.ld, p.qbuf.template ptr<T>(), Etot,
                  round_once(p.xq.data, p.xq.M, E, p.xq.ld, p.xq16));
    p.q = p.qbuf.template ptr<T>();
    p.k = p.q + E;
    p.v = p.k + kv;
    p.ldq = p.ldkv = Etot;
    return p;
  }
  p.xk = as_rows<T>(key, "key");
  if (p.fusion == Fusion::none) p.xv = as_rows<T>(value, "value");
  p.qbuf = buffer(qkept, p.xq.M, E);
  m.q_proj().forward(p.xq.data, p.xq.M, p.xq.ld, p.qbuf.template ptr<T>(), E,
                     round_once(p.xq.data, p.xq.M, E, p.xq.ld, p.xq16));
  p.q = p.qbuf.template ptr<T>();
  p.ldq = E;
  p.kvbuf = buffer(kvkept, p.xk.M, 2 * kv);
  p.k = p.kvbuf.template ptr<T>();
  p.v = p.k + kv;
  p.ldkv = 2 * kv;
  if (p.fusion == Fusion::kv) {
    const Linear<T>& lk = m.k_proj();
    Linear<T> fused(m.config().kdim, 2 * kv, lk.weight(), lk.weight_grad(), lk.bias(), lk.bias_grad());
    fused.share_bf16_weights(lk);
    fused.forward(p.xk.data, p.xk.M, p.xk.ld, p.k, p.ldkv, round_once(p.xk.data, p.xk.M, c.kdim, p.xk.ld, p.xk16));
  } else {
    m.k_proj().forward(p.xk.data, p.xk.M, p.xk.ld, p.k, p.ldkv, round_once(p.xk.data, p.xk.M, c.kdim, p.xk.ld, p.xk16));
    m.v_proj().forward(p.xv.data, p.xv.M, p.xv.ld, p.v, p.ldkv, round_once(p.xv.data, p.xv.M, c.vdim, p.xv.ld, p.xv16));
  }
  return p;
}

template void check_inputs<float>(const MultiheadAttention<float>&, const TensorView&, const TensorView&,
                                  const TensorView&);
template void check_inputs<double>(const MultiheadAttention<double>&, const TensorView&, const TensorView&,
                                   const TensorView&);
template Projections<float> project<float>(const MultiheadAttention<float>&, const TensorView&, const TensorView&,
                                           const TensorView&, Tensor*, Tensor*);
template Projections<double> project<double>(const MultiheadAttention<double>&, const TensorView&, const TensorView&,
                                             const TensorView&, Tensor*, Tensor*);

}  // namespace detail

template class MultiheadAttention<float>;
template class MultiheadAttention<double>;

}  // namespace attn::nn
