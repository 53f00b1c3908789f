// nn::TransformerEncoderLayer forward and backward (include/attn/nn/transformer.hpp), llm.c style:
// every intermediate is a named [M, E] buffer (M = B·L), and backward walks the forward's steps in
// reverse.
//   pre-norm   a = norm1(x); s = drop1(attn(a)); h = x + s; f = norm2(h); y = h + drop2(ffn(f))
//              dh = dy + norm2'(h, ffn'(f, drop2'(dy)));  dx = dh + norm1'(x, attn'(drop1'(dh)))
//   post-norm  s1 = x + drop1(attn(x)); h = norm1(s1); s2 = h + drop2(ffn(h)); y = norm2(s2)
//              ds2 = norm2'(s2, dy); dh = ds2 + ffn'(h, drop2'(ds2)); ds1 = norm1'(s1, dh);
//              dx = ds1 + attn'(drop1'(ds1))
// Checkpointing keeps only x (and y, the next layer's input) after forward and reruns forward at
// the start of backward: the same code on the same inputs and dropout bits, so the gradients are
// the same bit for bit.


#include "attn/error.hpp"
#include "attn/nn/make_attention.hpp"
#include "attn/nn/transformer.hpp"
#include "nn/gemm.hpp"
#include "nn/params.hpp"

namespace attn::nn {

template <class T>
struct TransformerEncoderLayer<T>::Buffers {
  std::int64_t B = 0, L = 0, M = 0;
  EncoderCall call;
  const T* x = nullptr;
  bool saved = false;               // intermediates present (false after a checkpointed forward)
  Tensor a, s, h, f, g, s1, s2, y;  // see the file comment; g = ffn output
  Tensor dh, tmp, dtmp;             // backward scratch
};

namespace {

template <class T>
void ensure(Tensor& t, std::int64_t n) {
  if (!t.data() || t.numel() != std::max<std::int64_t>(n, 1))
    t = Tensor(detail::dtype_of<T>(), {std::max<std::int64_t>(n, 1)});
}

template <class T>
void add_into(T* out, const T* a, const T* b, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <class T>
void add_to(T* out, const T* a, std::int64_t n, bool accumulate) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (std::int64_t i = 0; i < n; ++i) out[i] = accumulate ? out[i] + a[i] : a[i];
}

// Dropout's backward into `scratch`, or dy itself when the dropout is inactive (no copy).
template <class T>
const T* drop_backward(const Dropout<T>& drop, const T* dy, std::int64_t n, T* scratch, std::uint64_t step) {
  if (!drop.active()) return dy;
  drop.backward(dy, n, scratch, step);
  return scratch;
}

MhaConfig mha_config(const EncoderLayerConfig& c, std::uint32_t index) {
  MhaConfig m;
  m.embed_dim = c.embed_dim;
  m.num_heads = c.num_heads;
  m.num_kv_heads = c.num_kv_heads;
  m.bias = c.bias;
  m.dropout = c.attn_dropout;
  m.batch_first = true;
  m.rotary = c.rotary;
  m.window = c.window;
  m.stride = c.stride;
  m.global_tokens = c.global_tokens;
  m.feature_map = c.feature_map;
  m.seed = c.seed + 1000003ull * index;
  return m;
}

FfnConfig ffn_config(const EncoderLayerConfig& c, std::uint32_t index) {
  ATTN_CHECK(c.ffn_dim >= 0, value, "ffn_dim", "ffn_dim = ", c.ffn_dim, ", expected ≥ 0 (0 = 4·embed_dim)");
  return {c.embed_dim, c.ffn_dim ? c.ffn_dim : 4 * c.embed_dim, c.activation, c.bias, c.seed + 1000003ull * index + 17};
}

}  // namespace

template <class T>
TransformerEncoderLayer<T>::TransformerEncoderLayer(const EncoderLayerConfig& config, std::uint32_t layer_index)
    : config_(config),
      norm1_(config.norm, config.embed_dim, config.norm_eps, true),
      norm2_(config.norm, config.embed_dim, config.norm_eps, true),
      ffn_(ffn_config(config, layer_index)),
      drop1_(config.dropout, config.seed + 7919ull * layer_index, 2 * layer_index),
      drop2_(config.dropout, config.seed + 7919ull * layer_index, 2 * layer_index + 1),
      buf_(std::make_unique<Buffers>()) {
  if (config.attention == "mean") {
    ATTN_CHECK(!config.rotary, value, "rotary",
               "rotary is set with attention = \"mean\", which has no q or k to rotate");
    mix_ = std::make_unique<MeanMix<T>>(config.embed_dim, config.bias, config.seed + 1000003ull * layer_index);
  } else {
    const std::vector<std::string> known = attention_types();
    bool ok = false;
    for (const std::string& k : known) ok = ok || k == config.attention;
    std::string list;
    for (const std::string& k : known) list += k + ", ";
    ATTN_CHECK(ok, value, "attention", "\"", config.attention, "\", expected one of ", list, "mean");
    mha_ = make_attention<T>(config.attention, mha_config(config, layer_index));
  }
}

template <class T>
TransformerEncoderLayer<T>::~TransformerEncoderLayer() = default;
template <class T>
TransformerEncoderLayer<T>::TransformerEncoderLayer(TransformerEncoderLayer&&) noexcept = default;

template <class T>
void TransformerEncoderLayer<T>::set_training(bool training) {
  if (mha_) mha_->set_training(training);
  drop1_.set_training(training);
  drop2_.set_training(training);
}

template <class T>
void TransformerEncoderLayer<T>::mixer_forward(const T* in, T* out) {
  Buffers& b = *buf_;
  const std::int64_t E = config_.embed_dim;
  if (mix_) {
    mix_->forward(in, b.B, b.L, b.call.key_lengths, out);
    return;
  }
  MhaOptions o;
  o.key_lengths = b.call.key_lengths;
  o.is_causal = b.call.is_causal;
  o.dropout_offset = b.call.step;
  const TensorView xv(const_cast<T*>(in), detail::dtype_of<T>(), {b.B, b.L, E});
  mha_->forward_into(xv, xv, xv, o, out);  // no [M, E] output tensor and copy per call
}

template <class T>
void TransformerEncoderLayer<T>::mixer_backward(const T* dout, T* din, bool accumulate) {
  Buffers& b = *buf_;
  const std::int64_t E = config_.embed_dim;
  if (mix_) {
    mix_->backward(dout, din, accumulate);
    return;
  }
  // Fused QKV: dquery is the whole input gradient, written (or added) into din.
  mha_->backward_into(TensorView(const_cast<T*>(dout), detail::dtype_of<T>(), {b.B, b.L, E}), din, accumulate);
}

template <class T>
void TransformerEncoderLayer<T>::run_forward(const T* x) {
  Buffers& b = *buf_;
  const std::int64_t M = b.M, n = M * config_.embed_dim;
  const std::uint64_t step = b.call.step;
  for (Tensor* t : {&b.s, &b.h, &b.g, &b.y}) ensure<T>(*t, n);
  if (config_.norm_first) {
    ensure<T>(b.a, n);
    ensure<T>(b.f, n);
    norm1_.forward(x, M, b.a.template ptr<T>());
    mixer_forward(b.a.template ptr<T>(), b.s.template ptr<T>());
    drop1_.forward(b.s.template ptr<T>(), n, b.s.template ptr<T>(), step);
    add_into(b.h.template ptr<T>(), x, b.s.template ptr<T>(), n);
    norm2_.forward(b.h.template ptr<T>(), M, b.f.template ptr<T>());
    ffn_.forward(b.f.template ptr<T>(), M, b.g.template ptr<T>());
    drop2_.forward(b.g.template ptr<T>(), n, b.g.template ptr<T>(), step);
    add_into(b.y.template ptr<T>(), b.h.template ptr<T>(), b.g.template ptr<T>(), n);
  } else {
    ensure<T>(b.s1, n);
    ensure<T>(b.s2, n);
    mixer_forward(x, b.s.template ptr<T>());
    drop1_.forward(b.s.template ptr<T>(), n, b.s.template ptr<T>(), step);
    add_into(b.s1.template ptr<T>(), x, b.s.template ptr<T>(), n);
    norm1_.forward(b.s1.template ptr<T>(), M, b.h.template ptr<T>());
    ffn_.forward(b.h.template ptr<T>(), M, b.g.template ptr<T>());
    drop2_.forward(b.g.template ptr<T>(), n, b.g.template ptr<T>(), step);
    add_into(b.s2.template ptr<T>(), b.h.template ptr<T>(), b.g.template ptr<T>(), n);
    norm2_.forward(b.s2.template ptr<T>(), M, b.y.template ptr<T>());
  }
  b.saved = true;
}

template <class T>
const T* TransformerEncoderLayer<T>::forward(const T* x, std::int64_t B, std::int64_t L, const EncoderCall& call) {
  ATTN_CHECK(B >= 1 && L >= 1, value, "x", "B = ", B, ", L = ", L, ", expected both ≥ 1");
  ATTN_CHECK(call.key_lengths.empty() || static_cast<std::int64_t>(call.key_lengths.size()) == B, shape, "key_lengths",
             "has ", call.key_lengths.size(), " entries, expected B = ", B);
  for (std::size_t i = 0; i < call.key_lengths.size(); ++i)
    ATTN_CHECK(call.key_lengths[i] >= 1 && call.key_lengths[i] <= L, value, "key_lengths", "key_lengths[", i,
               "] = ", call.key_lengths[i], ", expected 1 ≤ length ≤ L = ", L);
  Buffers& b = *buf_;
  b.B = B;
  b.L = L;
  b.M = B * L;
  b.call = call;
  b.x = x;
  run_forward(x);
  if (checkpoint_) {  // keep y only; backward recomputes the rest
    for (Tensor* t : {&b.a, &b.s, &b.h, &b.f, &b.g, &b.s1, &b.s2, &b.dh, &b.tmp, &b.dtmp}) *t = Tensor();
    if (mha_) mha_->release_saved();
    ffn_.release_saved();
    b.saved = false;
  }
  return b.y.template ptr<T>();
}

template <class T>
const T* TransformerEncoderLayer<T>::output() const {
  return buf_->y.data() ? buf_->y.template ptr<T>() : nullptr;
}

template <class T>
void TransformerEncoderLayer<T>::backward(const T* x, const T* dy, T* dx, bool accumulate) {
  Buffers& b = *buf_;
  ATTN_CHECK(b.M > 0, value, "dy", "backward called before forward");
  ATTN_CHECK(x == b.x, value, "x", "is not the input of the last forward");
  if (!b.saved) run_forward(x);
  const std::int64_t M = b.M, n = M * config_.embed_dim;
  const std::uint64_t step = b.call.step;
  for (Tensor* t : {&b.dh, &b.tmp, &b.dtmp}) ensure<T>(*t, n);
  T *dh = b.dh.template ptr<T>(), *tmp = b.tmp.template ptr<T>(), *dtmp = b.dtmp.template ptr<T>();
  if (config_.norm_first) {
    add_to(dh, dy, n, false);
    ffn_.backward(b.f.template ptr<T>(), drop_backward(drop2_, dy, n, tmp, step), M, dtmp);
    norm2_.backward(b.h.template ptr<T>(), dtmp, M, dh, true);
    mixer_backward(drop_backward(drop1_, dh, n, tmp, step), dtmp, false);
    add_to(dx, dh, n, accumulate);
    norm1_.backward(x, dtmp, M, dx, true);
  } else {
    T* ds = dtmp;  // ds2, then ds1
    norm2_.backward(b.s2.template ptr<T>(), dy, M, ds);
    ffn_.backward(b.h.template ptr<T>(), drop_backward(drop2_, ds, n, tmp, step), M, dh);
    add_to(dh, ds, n, true);
    norm1_.backward(b.s1.template ptr<T>(), dh, M, ds);
    mixer_backward(drop_backward(drop1_, ds, n, tmp, step), dx, accumulate);
    add_to(dx, ds, n, true);
  }
  if (checkpoint_) {
    for (Tensor* t : {&b.a, &b.s, &b.h, &b.f, &b.g, &b.s1, &b.s2, &b.dh, &b.tmp, &b.dtmp}) *t = Tensor();
    if (mha_) mha_->release_saved();  // its buffers kept between steps too
    ffn_.release_saved();
    b.saved = false;
  }
}

template <class T>
std::vector<Child> TransformerEncoderLayer<T>::children() const {
  return {mha_ ? Child{"self_attn", &*mha_} : Child{"self_attn.mix_proj", &*mix_},
          {"", &ffn_},
          {"norm1", &norm1_},
          {"norm2", &norm2_}};
}

template <class T>
std::int64_t TransformerEncoderLayer<T>::saved_bytes() const {
  const Buffers& b = *buf_;
  std::int64_t bytes = 0;
  for (const Tensor* t : {&b.a, &b.s, &b.h, &b.f, &b.g, &b.s1, &b.s2, &b.y})
    if (t->data()) bytes += t->numel() * static_cast<std::int64_t>(sizeof(T));
  if (b.saved) {
    const std::int64_t E = config_.embed_dim, F = ffn_.config().hidden, M = b.M;
    bytes += M * (F + (ffn_.gated() ? 2 : 1) * F) * static_cast<std::int64_t>(sizeof(T));  // ffn a, h
    if (mha_) {
      const std::int64_t kvw = mha_->num_kv_heads() * mha_->head_dim();
      bytes +=
          M * (2 * E + 2 * kvw) * static_cast<std::int64_t>(sizeof(T)) + M * mha_->num_heads() * 4;  // qkv, ctx, lse
    }
  }
  return bytes;
}

template class TransformerEncoderLayer<float>;
template class TransformerEncoderLayer<double>;

}  // namespace attn::nn
