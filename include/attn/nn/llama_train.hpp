#pragma once
/// nn::TrainableLlama (docs/training.md): the LLaMA decoder of nn::LlamaForCausalLM with an
/// explicit backward, for `attn train lm`:
///   x = embed_tokens[ids];  h = stack(x);  logits = lm_head(h)
/// where stack is a pre-norm TransformerEncoder with causal self-attention: RMSNorm, RoPE
/// (half-split, rope_theta) and GQA in the attention block, the SwiGLU FeedForward, a final
/// RMSNorm — LLaMA's layer, built from the same nn modules LlamaForCausalLM runs. Its parameters
/// carry Hugging Face's names (model.embed_tokens.weight, model.layers.<i>.self_attn.o_proj.weight,
/// model.layers.<i>.mlp.gate_proj.weight, model.norm.weight, lm_head.weight, ...), so a saved model
/// directory loads in LlamaForCausalLM::from_pretrained, `attn generate` and transformers.
/// Backward walks the forward in reverse (llm.c style): lm_head, the stack (checkpointing per
/// layer when set), then the embedding's scatter. T = float, or double for gradient checks.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/nn/embedding.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/llama.hpp"
#include "attn/nn/module.hpp"
#include "attn/nn/optim.hpp"
#include "attn/nn/transformer.hpp"

namespace attn::nn {

template <class T>
class TrainableLlama : public Module {
 public:
  /// Random weights from `seed` (the modules' own initialisation). attn::Error for invalid sizes
  /// and for what this trainer does not implement: tie_word_embeddings, and attention_bias ≠
  /// mlp_bias (one bias switch covers both blocks here).
  explicit TrainableLlama(const LlamaConfig& config, std::uint64_t seed = 0);
  const LlamaConfig& config() const { return config_; }
  /// Gradient checkpointing per layer (each layer keeps its input and recomputes the rest).
  void set_checkpoint(bool checkpoint) { stack_.set_checkpoint(checkpoint); }

  /// logits [B·L, V] (row-major, owned by the model until its next forward) of the causal
  /// sequences ids [B·L] (row b at b·L, positions 0..L−1). ids outside [0, vocab_size) are an
  /// attn::Error. Keeps what backward needs.
  const T* forward(const std::int64_t* ids, std::int64_t B, std::int64_t L);
  /// Adds every parameter's gradient given dlogits [B·L, V] of the last forward.
  void backward(const T* dlogits);

  std::vector<Parameter> parameters() const override;
  /// Bytes of activations held between forward and backward (the stack's, the embedding output
  /// and the logits).
  std::int64_t saved_bytes() const;

 private:
  LlamaConfig config_;
  Embedding<T> embed_;
  TransformerEncoder<T> stack_;
  Linear<T> lm_head_;
  std::vector<std::int64_t> ids_;
  std::int64_t B_ = 0, L_ = 0;
  const T* h_ = nullptr;
  Tensor x_, logits_, dh_, dx_;
};

/// Mean cross-entropy (nats) of logits [M, V] against targets [M] (ids in [0, V)), with the
/// log-sum-exp in fp64; writes dlogits [M, V] = (softmax − onehot) / M when not null (it may be
/// the logits' own buffer). attn::Error for a target out of range.
template <class T>
double cross_entropy(const T* logits, const std::int64_t* targets, std::int64_t M, std::int64_t V, T* dlogits);

struct LmStepResult {
  double loss = 0;       ///< mean cross-entropy (nats) of the batch, before the update
  double grad_norm = 0;  ///< global L2 norm of the gradients before clipping
};

/// One training step: zero_grad, forward, cross_entropy against targets [B·L], backward (the
/// gradient of the logits is written over them), then AdamW step(lr) with clip_grad_norm(clip)'s
/// scaling fused into its pass (grad_norm + clip_scale: the same bits; the gradients stay unclipped).
template <class T>
LmStepResult lm_train_step(TrainableLlama<T>& model, AdamW& optimizer, const std::int64_t* ids,
                           const std::int64_t* targets, std::int64_t B, std::int64_t L, double lr, double clip);

/// The config.json text of `config` (model_type llama, hidden_act silu, rope_parameters), which
/// parse_llama_config reads back to the same values and transformers' LlamaConfig loads.
std::string llama_config_json(const LlamaConfig& config);
/// Writes a Hugging Face model directory: dir/config.json and dir/model.safetensors with the f32
/// parameters of `model` (a LlamaForCausalLM or a TrainableLlama<float>). Creates dir.
void save_llama_pretrained(const std::string& dir, const LlamaConfig& config, const Module& model);

extern template class TrainableLlama<float>;
extern template class TrainableLlama<double>;

}  // namespace attn::nn
