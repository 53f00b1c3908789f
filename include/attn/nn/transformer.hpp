#pragma once
/// nn::TransformerEncoderLayer and nn::TransformerEncoder (docs/nn.md), explicit forward and
/// backward (llm.c style) on row-major [B·L, E] activations (batch first):
///   pre-norm  (norm_first):  h = x + drop(attn(norm1(x)));   y = h + drop(ffn(norm2(h)))
///   post-norm:               h = norm1(x + drop(attn(x)));   y = norm2(h + drop(ffn(h)))
/// attn is a MultiheadAttention from make_attention ("mha", "gqa", "mqa", "local", "strided",
/// "linear"), or "mean": the
/// no-attention control, where every position gets the mean of its row's valid positions
/// followed by a linear map (MeanMix). Padding: key_lengths[b] valid positions in row b (keys past
/// it are masked; the outputs at those positions are computed but carry no information).
/// Parameter names follow torch's TransformerEncoderLayer: self_attn.{q,k,v,out}_proj.*
/// (mean: mix_proj.*), linear1.*, linear2.* (swiglu: gate_proj, up_proj, down_proj), norm1.*,
/// norm2.*; the encoder prefixes "layers.<i>." and adds "norm.*" (the final norm of a pre-norm
/// stack).
///
/// Gradient checkpointing (`checkpoint`): forward keeps only the layer's input; backward reruns
/// the layer's forward (same dropout bits) before going back through it.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attn/nn/dropout.hpp"
#include "attn/nn/feed_forward.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/module.hpp"
#include "attn/nn/multihead_attention.hpp"
#include "attn/nn/norm.hpp"
#include "attn/nn/rotary.hpp"

namespace attn::nn {

struct EncoderLayerConfig {
  std::int64_t embed_dim = 0;      ///< E
  std::int64_t num_heads = 1;      ///< Hq
  std::int64_t num_kv_heads = 0;   ///< Hkv for "gqa" (0 = num_heads)
  std::int64_t ffn_dim = 0;        ///< F; 0 = 4·E
  std::string attention = "mha";   ///< a make_attention kind, or "mean" (the no-attention control)
  std::int64_t window = -1;        ///< "local" (and "strided"'s local part): keys within this distance are visible
  std::int64_t stride = 0;         ///< "strided": query i sees the keys j with (i − j) mod stride = 0 (≥ 1)
  std::int64_t global_tokens = 0;  ///< "strided": the first tokens, seen by and seeing every position
  FeatureMap feature_map = FeatureMap::elu;  ///< "linear": elu + 1 or FAVOR+ (num_features = ⌈hd·ln hd⌉)
  Activation activation = Activation::gelu;
  NormKind norm = NormKind::layer_norm;
  bool norm_first = true;  ///< pre-norm (true) or post-norm
  double norm_eps = 1e-5;
  bool bias = true;                    ///< biases of the attention projections and the FFN
  double dropout = 0.0;                ///< on the two residual branches, while training
  double attn_dropout = 0.0;           ///< on the attention probabilities, while training
  std::optional<RotaryConfig> rotary;  ///< RoPE on q and k (attention kinds only)
  std::uint64_t seed = 0;
};

/// Per-call arguments of a layer or a stack.
struct EncoderCall {
  std::vector<std::int64_t> key_lengths;  ///< valid positions per row (empty: all L)
  bool is_causal = false;
  std::uint64_t step = 0;  ///< dropout offset of this call (advance it per training step)
};

/// The no-attention control: y[b, l] = W·mean_{j < len_b} x[b, j] + b for every l.
template <class T>
class MeanMix : public Module {
 public:
  MeanMix(std::int64_t dim, bool bias, std::uint64_t seed);
  /// x, y [B·L, E]; lengths empty = L.
  void forward(const T* x, std::int64_t B, std::int64_t L, const std::vector<std::int64_t>& lengths, T* y);
  void backward(const T* dy, T* dx, bool accumulate);
  std::vector<Child> children() const override { return {{"", &proj_}}; }

 private:
  Linear<T> proj_;
  std::int64_t B_ = 0, L_ = 0;
  std::vector<std::int64_t> lengths_;
  Tensor mean_;  // [B, E]
};

template <class T>
class TransformerEncoderLayer : public Module {
 public:
  /// Throws attn::Error for an invalid config (the messages of MultiheadAttention, FeedForward,
  /// the norms, Dropout, make_attention; an unknown attention kind lists the known ones).
  explicit TransformerEncoderLayer(const EncoderLayerConfig& config, std::uint32_t layer_index = 0);
  ~TransformerEncoderLayer() override;
  TransformerEncoderLayer(TransformerEncoderLayer&&) noexcept;

  const EncoderLayerConfig& config() const { return config_; }
  void set_training(bool training);
  void set_checkpoint(bool checkpoint) { checkpoint_ = checkpoint; }
  bool checkpoint() const { return checkpoint_; }
  MultiheadAttention<T>* attention() { return mha_.get(); }

  /// y [B·L, E] = layer(x [B·L, E]) (x row-major, kept alive by the caller until backward);
  /// returns y, which the layer owns until its next forward.
  const T* forward(const T* x, std::int64_t B, std::int64_t L, const EncoderCall& call = {});
  /// The last forward's y.
  const T* output() const;
  /// dx [B·L, E] (+= when accumulate) from dy and the forward's x; adds every parameter's gradient.
  void backward(const T* x, const T* dy, T* dx, bool accumulate = false);

  std::vector<Child> children() const override;
  /// Bytes of activations the layer holds between forward and backward (its own buffers and
  /// MultiheadAttention's saved projections; an estimate from the buffer sizes).
  std::int64_t saved_bytes() const;

  struct Buffers;

 private:
  void run_forward(const T* x);
  void mixer_forward(const T* in, T* out);
  void mixer_backward(const T* dout, T* din, bool accumulate);

  EncoderLayerConfig config_;
  std::unique_ptr<MultiheadAttention<T>> mha_;
  std::unique_ptr<MeanMix<T>> mix_;
  Norm<T> norm1_, norm2_;
  FeedForward<T> ffn_;
  Dropout<T> drop1_, drop2_;
  bool checkpoint_ = false;
  std::unique_ptr<Buffers> buf_;
};

struct EncoderConfig {
  EncoderLayerConfig layer;
  std::int64_t num_layers = 1;
  /// A norm after the last layer ("norm.*"); default: when the layers are pre-norm.
  std::optional<bool> final_norm;
};

template <class T>
class TransformerEncoder : public Module {
 public:
  explicit TransformerEncoder(const EncoderConfig& config);
  const EncoderConfig& config() const { return config_; }
  std::int64_t num_layers() const { return static_cast<std::int64_t>(layers_.size()); }
  TransformerEncoderLayer<T>& layer(std::int64_t i) { return layers_[static_cast<std::size_t>(i)]; }
  void set_training(bool training);
  /// Checkpointing for every layer (each layer keeps only its input).
  void set_checkpoint(bool checkpoint);

  /// y [B·L, E] = encoder(x [B·L, E]); x is kept alive by the caller until backward.
  const T* forward(const T* x, std::int64_t B, std::int64_t L, const EncoderCall& call = {});
  void backward(const T* x, const T* dy, T* dx, bool accumulate = false);
  std::vector<Child> children() const override;
  std::int64_t saved_bytes() const;

 private:
  EncoderConfig config_;
  std::vector<TransformerEncoderLayer<T>> layers_;
  std::optional<Norm<T>> norm_;
  Tensor out_;  // the final norm's output
  Tensor grad_[2];  // backward's two gradient buffers between layers, kept between steps
  std::int64_t M_ = 0;
};

extern template class MeanMix<float>;
extern template class MeanMix<double>;
extern template class TransformerEncoderLayer<float>;
extern template class TransformerEncoderLayer<double>;
extern template class TransformerEncoder<float>;
extern template class TransformerEncoder<double>;

}  // namespace attn::nn
