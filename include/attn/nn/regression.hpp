#pragma once
/// nn::RegressionTransformer (docs/nn.md): embeddings, a TransformerEncoder, pooling and a linear
/// head, with explicit forward and backward:
///   x[b, l] = token[ids[b, l]] + value_proj(features[b, l]) + position[l] + token_type[type_ids[b, l]]
///   h = encoder(x)   (key_lengths masks the padding on the right)
///   pooled[b] = mean_{l < len_b} h[b, l]   (Pooling::mean)   or   h[b, 0]   (Pooling::cls)
///   pred[b] = pooled[b]·W_headᵀ + b_head   [B, out_dim]
/// Each embedding is optional (size 0 = absent); at least one input must exist. Names:
/// embeddings.{token,position,token_type}.weight, embeddings.value_proj.{weight,bias},
/// encoder.layers.<i>.*, encoder.norm.*, head.{weight,bias}.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/nn/embedding.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/module.hpp"
#include "attn/nn/transformer.hpp"

namespace attn::nn {

enum class Pooling { mean, cls };
const char* pooling_name(Pooling p);
/// "mean" or "cls"; anything else is an attn::Error.
Pooling parse_pooling(const std::string& name);

struct RegressionConfig {
  std::int64_t vocab_size = 0;       ///< token ids in [0, vocab_size); 0 = no token embedding
  std::int64_t num_features = 0;     ///< continuous features per token (value_proj); 0 = none
  std::int64_t max_len = 0;          ///< learned position embeddings for L ≤ max_len; 0 = none
  std::int64_t type_vocab_size = 0;  ///< token type ids; 0 = none
  EncoderConfig encoder;
  Pooling pooling = Pooling::mean;
  std::int64_t out_dim = 1;
  /// Embedding init N(0, embedding_std²): 1 as torch's nn.Embedding (0.02 is BERT's; a pre-norm
  /// first layer then sees little but the value features, which slows learning which type a
  /// token has).
  double embedding_std = 1.0;
  std::uint64_t seed = 0;
};

/// One batch: arrays of B·L entries (row-major [B, L]; features [B, L, num_features]).
template <class T>
struct RegressionBatch {
  std::int64_t B = 0, L = 0;
  const std::int64_t* ids = nullptr;       ///< when vocab_size > 0
  const T* features = nullptr;             ///< when num_features > 0
  const std::int64_t* type_ids = nullptr;  ///< when type_vocab_size > 0
  std::vector<std::int64_t> lengths;       ///< valid positions per row; empty = L
  std::uint64_t step = 0;                  ///< dropout offset
};

template <class T>
class RegressionTransformer : public Module {
 public:
  explicit RegressionTransformer(const RegressionConfig& config);
  const RegressionConfig& config() const { return config_; }
  TransformerEncoder<T>& encoder() { return encoder_; }
  void set_training(bool training) { encoder_.set_training(training); }
  void set_checkpoint(bool checkpoint) { encoder_.set_checkpoint(checkpoint); }

  /// pred [B, out_dim] (owned by the model until its next forward). The batch's arrays must stay
  /// alive until backward.
  const T* forward(const RegressionBatch<T>& batch);
  /// Adds every parameter's gradient given dpred [B, out_dim].
  void backward(const T* dpred);

  std::vector<Child> children() const override;
  std::int64_t saved_bytes() const;

 private:
  RegressionConfig config_;
  std::unique_ptr<Embedding<T>> token_, position_, type_;
  std::unique_ptr<Linear<T>> value_proj_;
  TransformerEncoder<T> encoder_;
  Linear<T> head_;
  RegressionBatch<T> batch_;
  std::vector<std::int64_t> lengths_, positions_;
  Tensor x_, pooled_, pred_;
  Tensor v_, dh_, dx_;  // value_proj's output, backward's [M, E] gradients: scratch kept between steps
};

/// Mean squared error over n values; writes dpred = 2·(pred − target)/n; returns the loss.
template <class T>
double mse_loss(const T* pred, const T* target, std::int64_t n, T* dpred);

extern template class RegressionTransformer<float>;
extern template class RegressionTransformer<double>;

}  // namespace attn::nn
