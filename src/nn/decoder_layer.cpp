// nn::TransformerDecoderLayer forward and backward (include/attn/nn/decoder.hpp), llm.c style:
//   pre-norm   a = n1(x); h1 = x + d1(self(a)); b = n2(h1); h2 = h1 + d2(cross(b, mem)); f = n3(h2);
//              y = h2 + d3(ffn(f))
//              dh2 = dy + n3'(h2, ffn'(f, d3'(dy)));  dh1 = dh2 + n2'(h1, cross'_q(d2'(dh2)));
//              dx = dh1 + n1'(x, self'(d1'(dh1)));    dmem += cross'_kv(d2'(dh2))
//   post-norm  p1 = x + d1(self(x)); h1 = n1(p1); p2 = h1 + d2(cross(h1, mem)); h2 = n2(p2);
//              p3 = h2 + d3(ffn(h2)); y = n3(p3)
//              dp3 = n3'(p3, dy); dh2 = dp3 + ffn'(h2, d3'(dp3)); dp2 = n2'(p2, dh2);
//              dh1 = dp2 + cross'_q(d2'(dp2)); dp1 = n1'(p1, dh1); dx = dp1 + self'(d1'(dp1))
// The cross-attention's K/V come from one fused GEMM over the memory per call (MultiheadAttention
// with key and value the same view), and its input gradient (dkey) is the memory's. Cached
// decoding (forward_step) runs the same steps on a self-attention KV cache and on the memory's K/V
// projected once per sequence (make_cache), without dropout.

#include <cstring>

#include "attn/error.hpp"
#include "attn/nn/decoder.hpp"
#include "attn/nn/make_attention.hpp"
#include "nn/gemm.hpp"
#include "nn/params.hpp"

namespace attn::nn {

template <class T>
struct TransformerDecoderLayer<T>::Buffers {
  std::int64_t B = 0, Lt = 0, Ls = 0;
  DecoderCall call;
  const T *x = nullptr, *mem = nullptr;
  Tensor a, s, h1, b, c, h2, f, g, p1, p2, p3, y;
  Tensor t0, t1, t2;  // backward scratch
};

namespace {

template <class T>
T* ensure(Tensor& t, std::int64_t n) {
  if (!t.data() || t.numel() != std::max<std::int64_t>(n, 1))
    t = Tensor(detail::dtype_of<T>(), {std::max<std::int64_t>(n, 1)});
  return t.template ptr<T>();
}

template <class T>
void add(T* out, const T* a, const T* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <class T>
void add_to(T* out, const T* a, std::int64_t n, bool accumulate) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = accumulate ? out[i] + a[i] : a[i];
}

MhaConfig attention_config(const EncoderLayerConfig& c, std::uint64_t seed, bool rotary) {
  MhaConfig m;
  m.embed_dim = c.embed_dim;
  m.num_heads = c.num_heads;
  m.num_kv_heads = c.num_kv_heads;
  m.bias = c.bias;
  m.dropout = c.attn_dropout;
  m.batch_first = true;
  if (rotary) m.rotary = c.rotary;
  m.seed = seed;
  return m;
}

const EncoderLayerConfig& checked(const EncoderLayerConfig& c) {
  ATTN_CHECK(c.attention != "mean", value, "attention",
             "\"mean\" for a decoder layer, expected mha, gqa or mqa (the mean control has no cross-attention)");
  ATTN_CHECK(c.attention != "local", value, "attention",
             "\"local\" for a decoder layer, expected mha, gqa or mqa (a window over the encoder memory's positions "
             "is not defined for cross-attention)");
  ATTN_CHECK(c.attention != "linear", value, "attention",
             "\"linear\" for a decoder layer, expected mha, gqa or mqa (its cached decoding runs attn::decode, "
             "which has no linear form)");
  ATTN_CHECK(c.attention != "strided", value, "attention",
             "\"strided\" for a decoder layer, expected mha, gqa or mqa (a strided pattern over the encoder memory's "
             "positions is not defined for cross-attention)");
  ATTN_CHECK(c.ffn_dim >= 0, value, "ffn_dim", "ffn_dim = ", c.ffn_dim, ", expected ≥ 0 (0 = 4·embed_dim)");
  return c;
}

}  // namespace

template <class T>
TransformerDecoderLayer<T>::TransformerDecoderLayer(const EncoderLayerConfig& config, std::uint32_t i)
    : config_(checked(config)),
      norm1_(config.norm, config.embed_dim, config.norm_eps, true),
      norm2_(config.norm, config.embed_dim, config.norm_eps, true),
      norm3_(config.norm, config.embed_dim, config.norm_eps, true),
      ffn_({config.embed_dim, config.ffn_dim ? config.ffn_dim : 4 * config.embed_dim, config.activation, config.bias,
            config.seed + 2000003ull * i + 17}),
      drop1_(config.dropout, config.seed + 7927ull * i, 3 * i),
      drop2_(config.dropout, config.seed + 7927ull * i, 3 * i + 1),
      drop3_(config.dropout, config.seed + 7927ull * i, 3 * i + 2),
      buf_(std::make_unique<Buffers>()) {
  self_ = make_attention<T>(config.attention, attention_config(config, config.seed + 2000003ull * i, true));
  cross_ = make_attention<T>(config.attention, attention_config(config, config.seed + 2000003ull * i + 5, false));
}

template <class T>
TransformerDecoderLayer<T>::~TransformerDecoderLayer() = default;
template <class T>
TransformerDecoderLayer<T>::TransformerDecoderLayer(TransformerDecoderLayer&&) noexcept = default;

template <class T>
void TransformerDecoderLayer<T>::set_training(bool training) {
  self_->set_training(training);
  cross_->set_training(training);
  for (Dropout<T>* d : {&drop1_, &drop2_, &drop3_}) d->set_training(training);
}

// out = attention(q, kv) into a fresh tensor owned by `m`'s output; returned as a pointer to a
// buffer the caller copies.
template <class T>
const T* TransformerDecoderLayer<T>::attend(MultiheadAttention<T>& m, const T* q, std::int64_t Lq, const T* kv,
                                            std::int64_t Lk, bool self) {
  Buffers& b = *buf_;
  const std::int64_t E = config_.embed_dim;
  MhaOptions o;
  o.key_lengths = self ? b.call.tgt_lengths : b.call.memory_lengths;
  o.is_causal = self && b.call.is_causal;
  o.dropout_offset = b.call.step;
  const TensorView qv(const_cast<T*>(q), detail::dtype_of<T>(), {b.B, Lq, E});
  const TensorView kvv(const_cast<T*>(kv), detail::dtype_of<T>(), {b.B, Lk, E});
  Tensor& out = self ? b.s : b.c;
  out = m.forward(qv, self ? qv : kvv, self ? qv : kvv, o).out;
  return out.template ptr<T>();
}

template <class T>
const T* TransformerDecoderLayer<T>::forward(const T* x, std::int64_t B, std::int64_t Lt, const T* memory,
                                             std::int64_t Ls, const DecoderCall& call) {
  ATTN_CHECK(B >= 1 && Lt >= 1 && Ls >= 1, value, "x", "B = ", B, ", Lt = ", Lt, ", Ls = ", Ls, ", expected all ≥ 1");
  Buffers& b = *buf_;
  b.B = B;
  b.Lt = Lt;
  b.Ls = Ls;
  b.call = call;
  b.x = x;
  b.mem = memory;
  const std::int64_t M = B * Lt, n = M * config_.embed_dim;
  const std::uint64_t st = call.step;
  T *h1 = ensure<T>(b.h1, n), *h2 = ensure<T>(b.h2, n), *g = ensure<T>(b.g, n), *y = ensure<T>(b.y, n);
  if (config_.norm_first) {
    T *a = ensure<T>(b.a, n), *bq = ensure<T>(b.b, n), *f = ensure<T>(b.f, n);
    norm1_.forward(x, M, a);
    T* s = const_cast<T*>(attend(*self_, a, Lt, a, Lt, true));
    drop1_.forward(s, n, s, st);
    add(h1, x, s, n);
    norm2_.forward(h1, M, bq);
    T* c = const_cast<T*>(attend(*cross_, bq, Lt, memory, Ls, false));
    drop2_.forward(c, n, c, st);
    add(h2, h1, c, n);
    norm3_.forward(h2, M, f);
    ffn_.forward(f, M, g);
    drop3_.forward(g, n, g, st);
    add(y, h2, g, n);
  } else {
    T *p1 = ensure<T>(b.p1, n), *p2 = ensure<T>(b.p2, n), *p3 = ensure<T>(b.p3, n);
    T* s = const_cast<T*>(attend(*self_, x, Lt, x, Lt, true));
    drop1_.forward(s, n, s, st);
    add(p1, x, s, n);
    norm1_.forward(p1, M, h1);
    T* c = const_cast<T*>(attend(*cross_, h1, Lt, memory, Ls, false));
    drop2_.forward(c, n, c, st);
    add(p2, h1, c, n);
    norm2_.forward(p2, M, h2);
    ffn_.forward(h2, M, g);
    drop3_.forward(g, n, g, st);
    add(p3, h2, g, n);
    norm3_.forward(p3, M, y);
  }
  return y;
}

template <class T>
const T* TransformerDecoderLayer<T>::output() const {
  return buf_->y.data() ? buf_->y.template ptr<T>() : nullptr;
}

template <class T>
void TransformerDecoderLayer<T>::backward(const T* x, const T* dy, T* dx, T* dmemory, bool accumulate) {
  Buffers& b = *buf_;
  ATTN_CHECK(b.B > 0, value, "dy", "backward called before forward");
  ATTN_CHECK(x == b.x, value, "x", "is not the input of the last forward");
  const std::int64_t E = config_.embed_dim, M = b.B * b.Lt, n = M * E, nm = b.B * b.Ls * E;
  const std::uint64_t st = b.call.step;
  const DType dt = detail::dtype_of<T>();
  T *t0 = ensure<T>(b.t0, n), *t1 = ensure<T>(b.t1, n), *t2 = ensure<T>(b.t2, n);
  auto mha_back = [&](MultiheadAttention<T>& m, const T* dout, std::int64_t Lq) {
    return m.backward(TensorView(const_cast<T*>(dout), dt, {b.B, Lq, E}));
  };
  auto cross_back = [&](const T* dout, T* dq) {  // dq = cross'_q, dmem += cross'_kv
    const MhaGrads g = mha_back(*cross_, dout, b.Lt);
    add_to(dq, g.dquery.template ptr<T>(), n, false);
    add_to(dmemory, g.dkey.template ptr<T>(), nm, true);
  };
  if (config_.norm_first) {
    T* dh = t0;  // dh2, then dh1
    std::memcpy(dh, dy, static_cast<std::size_t>(n) * sizeof(T));
    drop3_.backward(dy, n, t1, st);
    ffn_.backward(b.f.template ptr<T>(), t1, M, t2);
    norm3_.backward(b.h2.template ptr<T>(), t2, M, dh, true);
    drop2_.backward(dh, n, t1, st);
    cross_back(t1, t2);
    norm2_.backward(b.h1.template ptr<T>(), t2, M, dh, true);
    drop1_.backward(dh, n, t1, st);
    const MhaGrads g = mha_back(*self_, t1, b.Lt);
    add_to(dx, dh, n, accumulate);
    norm1_.backward(x, g.dquery.template ptr<T>(), M, dx, true);
  } else {
    T* dp = t0;  // dp3, dp2, dp1
    norm3_.backward(b.p3.template ptr<T>(), dy, M, dp);
    drop3_.backward(dp, n, t1, st);
    ffn_.backward(b.h2.template ptr<T>(), t1, M, t2);  // t2 = dh2 − dp3
    add_to(t2, dp, n, true);
    norm2_.backward(b.p2.template ptr<T>(), t2, M, dp);
    drop2_.backward(dp, n, t1, st);
    cross_back(t1, t2);  // t2 = dh1 − dp2
    add_to(t2, dp, n, true);
    norm1_.backward(b.p1.template ptr<T>(), t2, M, dp);
    drop1_.backward(dp, n, t1, st);
    const MhaGrads g = mha_back(*self_, t1, b.Lt);
    add_to(dx, g.dquery.template ptr<T>(), n, accumulate);
    add_to(dx, dp, n, true);
  }
}

template <class T>
DecoderLayerCache TransformerDecoderLayer<T>::make_cache(const T* memory, std::int64_t B, std::int64_t Ls,
                                                         std::int64_t capacity,
                                                         const std::vector<std::int64_t>& memory_lengths) const {
  ATTN_CHECK(B >= 1 && Ls >= 1 && capacity >= 1, value, "B", "B = ", B, ", Ls = ", Ls, ", capacity = ", capacity,
             ", expected all ≥ 1");
  const TensorView mem(const_cast<T*>(memory), detail::dtype_of<T>(), {B, Ls, config_.embed_dim});
  return {self_->make_cache(B, capacity), cross_->project_kv(mem, memory_lengths)};
}

// The forward of the file comment with the self-attention on its KV cache and the cross-attention
// on the projected memory, without dropout.
template <class T>
const T* TransformerDecoderLayer<T>::forward_step(const T* x, std::int64_t B, std::int64_t Lt,
                                                  DecoderLayerCache& cache) {
  ATTN_CHECK(B >= 1 && Lt >= 1, value, "x", "B = ", B, ", Lt = ", Lt, ", expected both ≥ 1");
  Buffers& b = *buf_;
  b.B = 0;  // what forward kept is gone: backward needs a new forward
  b.x = nullptr;
  const std::int64_t E = config_.embed_dim, M = B * Lt, n = M * E;
  const DType dt = detail::dtype_of<T>();
  T *h1 = ensure<T>(b.h1, n), *h2 = ensure<T>(b.h2, n), *g = ensure<T>(b.g, n), *y = ensure<T>(b.y, n);
  auto self = [&](const T* q) {
    const TensorView v(const_cast<T*>(q), dt, {B, Lt, E});
    b.s = self_->forward_cached(v, v, v, cache.self);
    return b.s.template ptr<T>();
  };
  auto cross = [&](const T* q) {
    b.c = cross_->forward_cross_cached(TensorView(const_cast<T*>(q), dt, {B, Lt, E}), cache.cross);
    return b.c.template ptr<T>();
  };
  if (config_.norm_first) {
    T *a = ensure<T>(b.a, n), *bq = ensure<T>(b.b, n), *f = ensure<T>(b.f, n);
    norm1_.forward(x, M, a);
    add(h1, x, self(a), n);
    norm2_.forward(h1, M, bq);
    add(h2, h1, cross(bq), n);
    norm3_.forward(h2, M, f);
    ffn_.forward(f, M, g);
    add(y, h2, g, n);
  } else {
    T *p1 = ensure<T>(b.p1, n), *p2 = ensure<T>(b.p2, n), *p3 = ensure<T>(b.p3, n);
    add(p1, x, self(x), n);
    norm1_.forward(p1, M, h1);
    add(p2, h1, cross(h1), n);
    norm2_.forward(p2, M, h2);
    ffn_.forward(h2, M, g);
    add(p3, h2, g, n);
    norm3_.forward(p3, M, y);
  }
  return y;
}

template <class T>
std::vector<Child> TransformerDecoderLayer<T>::children() const {
  return {{"self_attn", &*self_}, {"multihead_attn", &*cross_}, {"", &ffn_},
          {"norm1", &norm1_},     {"norm2", &norm2_},           {"norm3", &norm3_}};
}

template class TransformerDecoderLayer<float>;
template class TransformerDecoderLayer<double>;

}  // namespace attn::nn
