// nn::TransformerEncoder: the layers in order, then the final norm (pre-norm stacks); backward in
// reverse with two gradient buffers in turn (include/attn/nn/transformer.hpp).

#include <cstring>

#include "attn/error.hpp"
#include "attn/nn/transformer.hpp"
#include "nn/gemm.hpp"
#include "nn/params.hpp"

namespace attn::nn {

template <class T>
TransformerEncoder<T>::TransformerEncoder(const EncoderConfig& config) : config_(config) {
  ATTN_CHECK(config.num_layers >= 1, value, "num_layers", "num_layers = ", config.num_layers, ", expected ≥ 1");
  layers_.reserve(static_cast<std::size_t>(config.num_layers));
  for (std::int64_t i = 0; i < config.num_layers; ++i)
    layers_.emplace_back(config.layer, static_cast<std::uint32_t>(i));
  if (config.final_norm.value_or(config.layer.norm_first))
    norm_.emplace(config.layer.norm, config.layer.embed_dim, config.layer.norm_eps, true);
}

template <class T>
void TransformerEncoder<T>::set_training(bool training) {
  for (auto& l : layers_) l.set_training(training);
}

template <class T>
void TransformerEncoder<T>::set_checkpoint(bool checkpoint) {
  for (auto& l : layers_) l.set_checkpoint(checkpoint);
}

template <class T>
const T* TransformerEncoder<T>::forward(const T* x, std::int64_t B, std::int64_t L, const EncoderCall& call) {
  const T* h = x;
  for (auto& l : layers_) h = l.forward(h, B, L, call);
  M_ = B * L;
  if (!norm_) return h;
  const std::int64_t n = M_ * config_.layer.embed_dim;
  if (!out_.data() || out_.numel() != n) out_ = Tensor(detail::dtype_of<T>(), {n});
  norm_->forward(h, M_, out_.template ptr<T>());
  return out_.template ptr<T>();
}

template <class T>
void TransformerEncoder<T>::backward(const T* x, const T* dy, T* dx, bool accumulate) {
  ATTN_CHECK(M_ > 0, value, "dy", "backward called before forward");
  const std::int64_t n = M_ * config_.layer.embed_dim, N = num_layers();
  std::vector<const T*> inputs(static_cast<std::size_t>(N));
  inputs[0] = x;
  // Layer i's input is layer i−1's output, which that layer owns.
  for (std::int64_t i = 1; i < N; ++i)
    inputs[static_cast<std::size_t>(i)] = layers_[static_cast<std::size_t>(i - 1)].output();
  for (Tensor& g : grad_)
    if (!g.data() || g.numel() != n) g = Tensor(detail::dtype_of<T>(), {n});
  const Tensor &g0 = grad_[0], &g1 = grad_[1];
  const T* d = dy;
  if (norm_) {
    norm_->backward(layers_.back().output(), dy, M_, g0.template ptr<T>());
    d = g0.template ptr<T>();
  }
  for (std::int64_t i = N - 1; i >= 0; --i) {
    T* out = i == 0 ? dx : (d == g0.template ptr<T>() ? g1.template ptr<T>() : g0.template ptr<T>());
    layers_[static_cast<std::size_t>(i)].backward(inputs[static_cast<std::size_t>(i)], d, out, i == 0 && accumulate);
    d = out;
  }
}

template <class T>
std::vector<Child> TransformerEncoder<T>::children() const {
  std::vector<Child> c;
  for (std::size_t i = 0; i < layers_.size(); ++i) c.push_back({"layers." + std::to_string(i), &layers_[i]});
  if (norm_) c.push_back({"norm", &*norm_});
  return c;
}

template <class T>
std::int64_t TransformerEncoder<T>::saved_bytes() const {
  std::int64_t bytes = out_.data() ? out_.numel() * static_cast<std::int64_t>(sizeof(T)) : 0;
  for (const auto& l : layers_) bytes += l.saved_bytes();
  return bytes;
}

template class TransformerEncoder<float>;
template class TransformerEncoder<double>;

}  // namespace attn::nn
