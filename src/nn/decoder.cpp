// nn::TransformerDecoder (layers, final norm; the memory gradient summed over the layers) and
// nn::Transformer (encoder, then decoder on its output) (include/attn/nn/decoder.hpp).

#include <cstring>

#include "attn/error.hpp"
#include "attn/nn/decoder.hpp"
#include "nn/gemm.hpp"
#include "nn/params.hpp"

namespace attn::nn {

template <class T>
TransformerDecoder<T>::TransformerDecoder(const DecoderConfig& config) : config_(config) {
  ATTN_CHECK(config.num_layers >= 1, value, "num_layers", "num_layers = ", config.num_layers, ", expected ≥ 1");
  layers_.reserve(static_cast<std::size_t>(config.num_layers));
  for (std::int64_t i = 0; i < config.num_layers; ++i)
    layers_.emplace_back(config.layer, static_cast<std::uint32_t>(i));
  if (config.final_norm.value_or(config.layer.norm_first))
    norm_.emplace(config.layer.norm, config.layer.embed_dim, config.layer.norm_eps, true);
}

template <class T>
void TransformerDecoder<T>::set_training(bool training) {
  for (auto& l : layers_) l.set_training(training);
}

template <class T>
const T* TransformerDecoder<T>::forward(const T* x, std::int64_t B, std::int64_t Lt, const T* memory, std::int64_t Ls,
                                        const DecoderCall& call) {
  const T* h = x;
  for (auto& l : layers_) h = l.forward(h, B, Lt, memory, Ls, call);
  M_ = B * Lt;
  Ms_ = B * Ls;
  if (!norm_) return h;
  const std::int64_t n = M_ * config_.layer.embed_dim;
  if (!out_.data() || out_.numel() != n) out_ = Tensor(detail::dtype_of<T>(), {n});
  norm_->forward(h, M_, out_.template ptr<T>());
  return out_.template ptr<T>();
}

template <class T>
void TransformerDecoder<T>::backward(const T* x, const T* dy, T* dx, T* dmemory, bool accumulate) {
  ATTN_CHECK(M_ > 0, value, "dy", "backward called before forward");
  const std::int64_t n = M_ * config_.layer.embed_dim, N = num_layers();
  Tensor g0(detail::dtype_of<T>(), {n}), g1(detail::dtype_of<T>(), {n});
  const T* d = dy;
  if (norm_) {
    norm_->backward(layers_.back().output(), dy, M_, g0.template ptr<T>());
    d = g0.template ptr<T>();
  }
  for (std::int64_t i = N - 1; i >= 0; --i) {
    const T* in = i == 0 ? x : layers_[static_cast<std::size_t>(i - 1)].output();
    T* out = i == 0 ? dx : (d == g0.template ptr<T>() ? g1.template ptr<T>() : g0.template ptr<T>());
    layers_[static_cast<std::size_t>(i)].backward(in, d, out, dmemory, i == 0 && accumulate);
    d = out;
  }
}

template <class T>
std::vector<DecoderLayerCache> TransformerDecoder<T>::make_cache(const T* memory, std::int64_t B, std::int64_t Ls,
                                                                 std::int64_t capacity,
                                                                 const std::vector<std::int64_t>& memory_lengths) const {
  std::vector<DecoderLayerCache> caches;
  caches.reserve(layers_.size());
  for (const auto& l : layers_) caches.push_back(l.make_cache(memory, B, Ls, capacity, memory_lengths));
  return caches;
}

template <class T>
const T* TransformerDecoder<T>::forward_step(const T* x, std::int64_t B, std::int64_t Lt,
                                             std::vector<DecoderLayerCache>& caches) {
  ATTN_CHECK(caches.size() == layers_.size(), value, "caches", "has ", caches.size(), " layer states, expected ",
             layers_.size(), " (one per layer, from make_cache)");
  M_ = 0;  // backward needs a new forward
  const T* h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) h = layers_[i].forward_step(h, B, Lt, caches[i]);
  if (!norm_) return h;
  const std::int64_t M = B * Lt, n = M * config_.layer.embed_dim;
  if (!out_.data() || out_.numel() != n) out_ = Tensor(detail::dtype_of<T>(), {n});
  norm_->forward(h, M, out_.template ptr<T>());
  return out_.template ptr<T>();
}

template <class T>
std::vector<Child> TransformerDecoder<T>::children() const {
  std::vector<Child> c;
  for (std::size_t i = 0; i < layers_.size(); ++i) c.push_back({"layers." + std::to_string(i), &layers_[i]});
  if (norm_) c.push_back({"norm", &*norm_});
  return c;
}

template <class T>
Transformer<T>::Transformer(const EncoderConfig& encoder, const DecoderConfig& decoder)
    : encoder_(encoder), decoder_(decoder) {
  ATTN_CHECK(encoder.layer.embed_dim == decoder.layer.embed_dim, value, "decoder.layer.embed_dim", "= ",
             decoder.layer.embed_dim, ", expected the encoder's embed_dim ", encoder.layer.embed_dim);
}

template <class T>
void Transformer<T>::set_training(bool training) {
  encoder_.set_training(training);
  decoder_.set_training(training);
}

template <class T>
const T* Transformer<T>::forward(const T* src, std::int64_t Ls, const T* tgt, std::int64_t Lt, std::int64_t B,
                                 const std::vector<std::int64_t>& src_lengths, DecoderCall call) {
  EncoderCall ec;
  ec.key_lengths = src_lengths;
  ec.step = call.step;
  memory_ = encoder_.forward(src, B, Ls, ec);
  call.memory_lengths = src_lengths;
  src_ = src;
  tgt_ = tgt;
  B_ = B;
  Ls_ = Ls;
  Lt_ = Lt;
  return decoder_.forward(tgt, B, Lt, memory_, Ls, call);
}

template <class T>
void Transformer<T>::backward(const T* dy, T* dsrc, T* dtgt) {
  ATTN_CHECK(memory_ != nullptr, value, "dy", "backward called before forward");
  const std::int64_t nm = B_ * Ls_ * encoder_.config().layer.embed_dim;
  Tensor dmem(detail::dtype_of<T>(), {nm});
  std::memset(dmem.data(), 0, static_cast<std::size_t>(nm) * sizeof(T));
  decoder_.backward(tgt_, dy, dtgt, dmem.template ptr<T>());
  encoder_.backward(src_, dmem.template ptr<T>(), dsrc);
}

template <class T>
std::vector<Child> Transformer<T>::children() const {
  return {{"encoder", &encoder_}, {"decoder", &decoder_}};
}

template class TransformerDecoder<float>;
template class TransformerDecoder<double>;
template class Transformer<float>;
template class Transformer<double>;

}  // namespace attn::nn
