// nn::RegressionTransformer forward and backward (include/attn/nn/regression.hpp):
//   1. x = Σ embeddings   2. h = encoder(x)   3. pooled = mean over the valid rows or h[b, 0]
//   4. pred = head(pooled);   backward: 4' head, 3' spread dpooled over the pooled rows,
//   2' encoder, 1' every embedding (scatter-add) and value_proj.

#include "attn/nn/regression.hpp"

#include <algorithm>

#include "attn/error.hpp"
#include "nn/gemm.hpp"
#include "nn/params.hpp"

namespace attn::nn {

const char* pooling_name(Pooling p) { return p == Pooling::mean ? "mean" : "cls"; }

Pooling parse_pooling(const std::string& name) {
  if (name == "mean") return Pooling::mean;
  if (name == "cls") return Pooling::cls;
  throw Error(ErrorKind::value, "pooling", ::attn::detail::concat("\"", name, "\", expected mean or cls"));
}

namespace {

// Enough work per parallel region to pay for waking the threads; columns per pooling task.
constexpr std::int64_t kParallelElems = 1 << 15;
constexpr std::int64_t kColumnBlock = 64;

// t holds n elements of dt (reallocated only when the size changes: scratch kept between steps).
void ensure(Tensor& t, DType dt, std::int64_t n) {
  if (!t.data() || t.numel() != n) t = Tensor(dt, {n});
}

template <class T>
void fill_zero(T* x, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
  for (std::int64_t i = 0; i < n; ++i) x[i] = T(0);
}

std::int64_t embed_dim_of(const RegressionConfig& c) {
  ATTN_CHECK(c.vocab_size > 0 || c.num_features > 0, value, "vocab_size",
             "vocab_size = 0 and num_features = 0: the model has no input (expected at least one > 0)");
  ATTN_CHECK(c.out_dim >= 1, value, "out_dim", "out_dim = ", c.out_dim, ", expected ≥ 1");
  return c.encoder.layer.embed_dim;
}

}  // namespace

template <class T>
RegressionTransformer<T>::RegressionTransformer(const RegressionConfig& config)
    : config_(config), encoder_(config.encoder), head_(embed_dim_of(config), config.out_dim, true, config.seed + 5) {
  const std::int64_t E = config.encoder.layer.embed_dim;
  if (config.vocab_size > 0)
    token_ = std::make_unique<Embedding<T>>(config.vocab_size, E, config.seed + 1, config.embedding_std);
  if (config.max_len > 0)
    position_ = std::make_unique<Embedding<T>>(config.max_len, E, config.seed + 2, config.embedding_std);
  if (config.type_vocab_size > 0)
    type_ = std::make_unique<Embedding<T>>(config.type_vocab_size, E, config.seed + 3, config.embedding_std);
  if (config.num_features > 0) value_proj_ = std::make_unique<Linear<T>>(config.num_features, E, true, config.seed + 4);
}

template <class T>
const T* RegressionTransformer<T>::forward(const RegressionBatch<T>& batch) {
  const std::int64_t B = batch.B, L = batch.L, M = B * L, E = config_.encoder.layer.embed_dim;
  ATTN_CHECK(B >= 1 && L >= 1, value, "batch", "B = ", B, ", L = ", L, ", expected both ≥ 1");
  ATTN_CHECK(!position_ || L <= config_.max_len, value, "batch.L", "L = ", L,
             ", expected ≤ max_len = ", config_.max_len);
  ATTN_CHECK(!token_ || batch.ids, value, "batch.ids", "missing, expected [B, L] token ids (vocab_size > 0)");
  ATTN_CHECK(!value_proj_ || batch.features, value, "batch.features", "missing, expected [B, L, ", config_.num_features,
             "] features");
  ATTN_CHECK(!type_ || batch.type_ids, value, "batch.type_ids", "missing, expected [B, L] token type ids");
  batch_ = batch;
  lengths_ = batch.lengths.empty() ? std::vector<std::int64_t>(static_cast<std::size_t>(B), L) : batch.lengths;
  const DType dt = detail::dtype_of<T>();
  ensure(x_, dt, M * E);  // 1.
  T* x = x_.ptr<T>();
  fill_zero(x, M * E);
  if (token_) token_->forward(batch.ids, M, x, E, true, "batch.ids");
  if (type_) type_->forward(batch.type_ids, M, x, E, true, "batch.type_ids");
  if (position_) {
    positions_.resize(static_cast<std::size_t>(M));
    for (std::int64_t m = 0; m < M; ++m) positions_[static_cast<std::size_t>(m)] = m % L;
    position_->forward(positions_.data(), M, x, E, true);
  }
  if (value_proj_) {
    const std::int64_t F = config_.num_features;
    ensure(v_, dt, M * E);
    value_proj_->forward(batch.features, M, F, v_.ptr<T>(), E);
    const T* vp = v_.ptr<T>();
#pragma omp parallel for schedule(static) if (M * E >= kParallelElems)
    for (std::int64_t i = 0; i < M * E; ++i) x[i] += vp[i];
  }
  EncoderCall call;  // 2.
  call.key_lengths = batch.lengths;
  call.step = batch.step;
  const T* h = encoder_.forward(x, B, L, call);
  pooled_ = Tensor(dt, {B, E});  // 3.
  T* p = pooled_.ptr<T>();
  // Per (b, column block): the rows in order, so the bits do not depend on the thread count.
  const std::int64_t blocks = (E + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for collapse(2) schedule(static) if (M * E >= kParallelElems)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t blk = 0; blk < blocks; ++blk) {
      const std::int64_t n = config_.pooling == Pooling::mean ? lengths_[static_cast<std::size_t>(b)] : 1;
      const std::int64_t e0 = blk * kColumnBlock, e1 = std::min(E, e0 + kColumnBlock);
      for (std::int64_t e = e0; e < e1; ++e) p[b * E + e] = T(0);
      for (std::int64_t l = 0; l < n; ++l)
        for (std::int64_t e = e0; e < e1; ++e) p[b * E + e] += h[(b * L + l) * E + e];
      for (std::int64_t e = e0; e < e1; ++e) p[b * E + e] /= static_cast<T>(n);
    }
  pred_ = Tensor(dt, {B, config_.out_dim});  // 4.
  head_.forward(p, B, E, pred_.ptr<T>(), config_.out_dim);
  return pred_.ptr<T>();
}

template <class T>
void RegressionTransformer<T>::backward(const T* dpred) {
  ATTN_CHECK(pred_.data() != nullptr, value, "dpred", "backward called before forward");
  const std::int64_t B = batch_.B, L = batch_.L, M = B * L, E = config_.encoder.layer.embed_dim;
  const DType dt = detail::dtype_of<T>();
  Tensor dp(dt, {B, E});
  ensure(dh_, dt, M * E);
  ensure(dx_, dt, M * E);
  head_.backward(pooled_.ptr<T>(), E, dpred, config_.out_dim, B, dp.ptr<T>(), E);  // 4'.
  T* g = dh_.ptr<T>();                                                             // 3'.
  const T* dpp = dp.ptr<T>();
#pragma omp parallel for collapse(2) schedule(static) if (M * E >= kParallelElems)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t l = 0; l < L; ++l) {
      const std::int64_t n = config_.pooling == Pooling::mean ? lengths_[static_cast<std::size_t>(b)] : 1;
      const T inv = T(1) / static_cast<T>(n);
      T* gr = g + (b * L + l) * E;
      for (std::int64_t e = 0; e < E; ++e) gr[e] = l < n ? dpp[b * E + e] * inv : T(0);
    }
  encoder_.backward(x_.ptr<T>(), g, dx_.ptr<T>());  // 2'.
  const T* d = dx_.ptr<T>();                        // 1'.
  if (token_) token_->backward(batch_.ids, M, d, E);
  if (type_) type_->backward(batch_.type_ids, M, d, E);
  if (position_) position_->backward(positions_.data(), M, d, E);
  if (value_proj_) value_proj_->backward(batch_.features, config_.num_features, d, E, M, nullptr, 0);
}

template <class T>
std::vector<Child> RegressionTransformer<T>::children() const {
  std::vector<Child> c;
  if (token_) c.push_back({"embeddings.token", &*token_});
  if (position_) c.push_back({"embeddings.position", &*position_});
  if (type_) c.push_back({"embeddings.token_type", &*type_});
  if (value_proj_) c.push_back({"embeddings.value_proj", &*value_proj_});
  c.push_back({"encoder", &encoder_});
  c.push_back({"head", &head_});
  return c;
}

template <class T>
std::int64_t RegressionTransformer<T>::saved_bytes() const {
  return encoder_.saved_bytes() + (x_.data() ? x_.numel() * static_cast<std::int64_t>(sizeof(T)) : 0);
}

template <class T>
double mse_loss(const T* pred, const T* target, std::int64_t n, T* dpred) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
    s += d * d;
    if (dpred) dpred[i] = static_cast<T>(2.0 * d / static_cast<double>(n));
  }
  return s / static_cast<double>(n);
}

template class RegressionTransformer<float>;
template class RegressionTransformer<double>;
template double mse_loss<float>(const float*, const float*, std::int64_t, float*);
template double mse_loss<double>(const double*, const double*, std::int64_t, double*);

}  // namespace attn::nn
