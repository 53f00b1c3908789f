#pragma once
/// nn::TransformerDecoderLayer, nn::TransformerDecoder and nn::Transformer (encoder–decoder)
/// (docs/nn.md), explicit forward and backward on row-major [B·L, E] activations (batch first):
///   pre-norm   h1 = x + drop(self(norm1(x)));  h2 = h1 + drop(cross(norm2(h1), mem));  y = h2 + drop(ffn(norm3(h2)))
///   post-norm  h1 = norm1(x + drop(self(x)));  h2 = norm2(h1 + drop(cross(h1, mem)));  y = norm3(h2 + drop(ffn(h2)))
/// self is causal self-attention (RoPE when configured), cross attends to the encoder memory
/// [B·Ls, E], whose K and V are projected once per layer and call (one fused KV GEMM) and whose
/// gradient accumulates over the layers. Names follow torch's TransformerDecoderLayer:
/// self_attn.*, multihead_attn.*, linear1.*, linear2.* (swiglu: gate/up/down_proj), norm1-3.*.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "attn/nn/transformer.hpp"

namespace attn::nn {

/// Per-call arguments of a decoder layer or stack.
struct DecoderCall {
  std::vector<std::int64_t> tgt_lengths;     ///< valid target positions per row (empty: all)
  std::vector<std::int64_t> memory_lengths;  ///< valid memory positions per row (empty: all)
  bool is_causal = true;                     ///< causal self-attention
  std::uint64_t step = 0;                    ///< dropout offset
};

/// Cached decoding state of one decoder layer (inference): the self-attention's KV cache (this
/// sequence's target tokens so far) and the cross-attention's memory K/V, projected once per
/// sequence (MultiheadAttention::project_kv).
struct DecoderLayerCache {
  KvCache self;
  KvCache cross;
};

template <class T>
class TransformerDecoderLayer : public Module {
 public:
  /// config.attention: "mha", "gqa" or "mqa" (both attentions); rotary applies to self-attention.
  explicit TransformerDecoderLayer(const EncoderLayerConfig& config, std::uint32_t layer_index = 0);
  ~TransformerDecoderLayer() override;
  TransformerDecoderLayer(TransformerDecoderLayer&&) noexcept;
  const EncoderLayerConfig& config() const { return config_; }
  void set_training(bool training);

  /// y [B·Lt, E] = layer(x [B·Lt, E], memory [B·Ls, E]); x and memory stay alive until backward.
  const T* forward(const T* x, std::int64_t B, std::int64_t Lt, const T* memory, std::int64_t Ls,
                   const DecoderCall& call = {});
  const T* output() const;
  /// dx [B·Lt, E] (+= when accumulate); dmemory [B·Ls, E] += the memory gradient; parameters' gradients added.
  void backward(const T* x, const T* dy, T* dx, T* dmemory, bool accumulate = false);

  /// Cached decoding (inference: no dropout, no backward; T = float): the state of B rows of at
  /// most `capacity` target tokens attending to memory [B·Ls, E] (memory_lengths: valid memory
  /// positions per row, empty = all), whose K/V are projected here, once.
  DecoderLayerCache make_cache(const T* memory, std::int64_t B, std::int64_t Ls, std::int64_t capacity,
                               const std::vector<std::int64_t>& memory_lengths = {}) const;
  /// y [B·Lt, E] of the next Lt target tokens x [B·Lt, E] of every row: causal self-attention over
  /// the row's cached tokens and these (their K/V appended to cache.self), cross-attention to the
  /// cached memory. Step by step it gives forward()'s rows of the whole sequence (causal, eval
  /// mode). It replaces what forward kept, so backward needs a new forward.
  const T* forward_step(const T* x, std::int64_t B, std::int64_t Lt, DecoderLayerCache& cache);
  std::vector<Child> children() const override;

  struct Buffers;

 private:
  const T* attend(MultiheadAttention<T>& m, const T* q, std::int64_t Lq, const T* kv, std::int64_t Lk, bool self);
  EncoderLayerConfig config_;
  std::unique_ptr<MultiheadAttention<T>> self_, cross_;
  Norm<T> norm1_, norm2_, norm3_;
  FeedForward<T> ffn_;
  Dropout<T> drop1_, drop2_, drop3_;
  std::unique_ptr<Buffers> buf_;
};

struct DecoderConfig {
  EncoderLayerConfig layer;
  std::int64_t num_layers = 1;
  std::optional<bool> final_norm;  ///< default: when the layers are pre-norm
};

template <class T>
class TransformerDecoder : public Module {
 public:
  explicit TransformerDecoder(const DecoderConfig& config);
  std::int64_t num_layers() const { return static_cast<std::int64_t>(layers_.size()); }
  void set_training(bool training);
  const T* forward(const T* x, std::int64_t B, std::int64_t Lt, const T* memory, std::int64_t Ls,
                   const DecoderCall& call = {});
  /// dx (+= when accumulate) and dmemory (+=).
  void backward(const T* x, const T* dy, T* dx, T* dmemory, bool accumulate = false);
  /// Cached decoding (TransformerDecoderLayer::make_cache / forward_step), one state per layer.
  std::vector<DecoderLayerCache> make_cache(const T* memory, std::int64_t B, std::int64_t Ls, std::int64_t capacity,
                                            const std::vector<std::int64_t>& memory_lengths = {}) const;
  const T* forward_step(const T* x, std::int64_t B, std::int64_t Lt, std::vector<DecoderLayerCache>& caches);
  std::vector<Child> children() const override;

 private:
  DecoderConfig config_;
  std::vector<TransformerDecoderLayer<T>> layers_;
  std::optional<Norm<T>> norm_;
  Tensor out_;
  std::int64_t M_ = 0, Ms_ = 0;
};

/// Encoder–decoder: memory = encoder(src), y = decoder(tgt, memory). Names encoder.*, decoder.*.
template <class T>
class Transformer : public Module {
 public:
  Transformer(const EncoderConfig& encoder, const DecoderConfig& decoder);
  TransformerEncoder<T>& encoder() { return encoder_; }
  TransformerDecoder<T>& decoder() { return decoder_; }
  void set_training(bool training);
  /// src [B·Ls, E], tgt [B·Lt, E] -> y [B·Lt, E]; src_lengths mask the encoder's keys and the
  /// decoder's memory, call.tgt_lengths the decoder's self-attention keys.
  const T* forward(const T* src, std::int64_t Ls, const T* tgt, std::int64_t Lt, std::int64_t B,
                   const std::vector<std::int64_t>& src_lengths = {}, DecoderCall call = {});
  /// dsrc [B·Ls, E], dtgt [B·Lt, E] (overwritten); parameters' gradients added.
  void backward(const T* dy, T* dsrc, T* dtgt);
  std::vector<Child> children() const override;

 private:
  TransformerEncoder<T> encoder_;
  TransformerDecoder<T> decoder_;
  const T *src_ = nullptr, *tgt_ = nullptr, *memory_ = nullptr;
  std::int64_t B_ = 0, Ls_ = 0, Lt_ = 0;
};

extern template class TransformerDecoderLayer<float>;
extern template class TransformerDecoderLayer<double>;
extern template class TransformerDecoder<float>;
extern template class TransformerDecoder<double>;
extern template class Transformer<float>;
extern template class Transformer<double>;

}  // namespace attn::nn
