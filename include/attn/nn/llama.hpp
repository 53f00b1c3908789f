#pragma once
/// nn::LlamaForCausalLM (docs/generation.md): a decoder-only language model with Hugging Face
/// LLaMA's architecture, names and config.json, for inference:
///   x = embed_tokens[ids]
///   per layer:  x += o_proj(attn(RoPE(q_proj(n1(x))), RoPE(k_proj(n1(x))), v_proj(n1(x))))   causal, GQA
///               x += down_proj(silu(gate_proj(n2(x))) ∘ up_proj(n2(x)))                     SwiGLU
///   logits = lm_head(norm(x))      (lm_head = embed_tokensᵀ when tie_word_embeddings)
/// n1, n2, norm are RMSNorm (rms_norm_eps); RoPE is half-split (GPT-NeoX order) with base rope_theta
/// over the whole head dim. The attention blocks are nn::MultiheadAttention, the norms nn::RMSNorm,
/// the MLPs nn::FeedForward (swiglu), so the model adds only the residual stream and the head.
///
/// Two ways to run it: `forward` recomputes the whole causal sequence (no cache; the reference the
/// cached path is tested against) and `forward_cached` appends tokens to one KvCache per layer
/// (contiguous or paged; f32, bf16 or i8 storage): a prompt is one call (prefill), then one call
/// per new token.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attn/kv_cache.hpp"
#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

/// What a LLaMA config.json says (Hugging Face LlamaConfig; transformers 4.x `rope_theta` /
/// `rope_scaling` and 5.x `rope_parameters` are both read).
struct LlamaConfig {
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;        ///< E
  std::int64_t intermediate_size = 0;  ///< F of the SwiGLU MLP
  std::int64_t num_hidden_layers = 0;
  std::int64_t num_attention_heads = 0;  ///< Hq
  std::int64_t num_key_value_heads = 0;  ///< Hkv (absent: Hq)
  std::int64_t head_dim = 0;             ///< hidden_size / num_attention_heads (the only one supported)
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  std::int64_t max_position_embeddings = 2048;
  std::optional<std::int64_t> bos_token_id;
  std::vector<std::int64_t> eos_token_ids;  ///< int or list in the file; empty = none
};

/// Parses the text of a config.json. attn::Error (argument "config.json" or "config.json: <key>")
/// for bad JSON, a missing or mistyped key, sizes that do not fit (heads not dividing the width),
/// and configurations this model does not implement (model_type other than llama, hidden_act other
/// than silu, rope scaling other than "default", head_dim ≠ hidden_size / num_attention_heads).
/// `source` names the file in messages.
LlamaConfig parse_llama_config(const std::string& json_text, const std::string& source = "config.json");
/// Reads and parses `path` (attn::Error of kind system when it cannot be read).
LlamaConfig load_llama_config(const std::string& path);

/// One cache per layer.
using LlamaCache = std::vector<KvCache>;

/// The language model, f32. Parameters under Hugging Face's names: model.embed_tokens.weight,
/// model.layers.<i>.{input_layernorm, post_attention_layernorm}.weight,
/// model.layers.<i>.self_attn.{q,k,v,o}_proj.weight (.bias with attention_bias),
/// model.layers.<i>.mlp.{gate,up,down}_proj.weight (.bias with mlp_bias), model.norm.weight and
/// lm_head.weight (absent when tied).
class LlamaForCausalLM : public Module {
 public:
  /// Random weights from `seed` (the modules' own initialisation); attn::Error for invalid sizes.
  explicit LlamaForCausalLM(const LlamaConfig& config, std::uint64_t seed = 0);
  ~LlamaForCausalLM() override;
  LlamaForCausalLM(LlamaForCausalLM&&) noexcept;
  LlamaForCausalLM& operator=(LlamaForCausalLM&&) noexcept;

  /// Loads `dir`/config.json and `dir`/model.safetensors (f32, bf16 or f16 tensors, converted to
  /// f32). attn::Error naming the file for a missing or unreadable file, and one error listing every
  /// missing, unexpected or mis-shaped tensor (a tied checkpoint's lm_head.weight, if present, is
  /// ignored).
  static LlamaForCausalLM from_pretrained(const std::string& dir);

  const LlamaConfig& config() const;
  std::int64_t vocab_size() const;

  /// A cache per layer for `batch` rows of up to `capacity` tokens (growable beyond it).
  LlamaCache make_cache(std::int64_t batch, std::int64_t capacity, DType dtype = DType::f32,
                        KvLayout layout = KvLayout::contiguous) const;

  /// Logits [B, L, V] of the causal sequence ids [B·L] (row b's tokens at b·L + l, positions 0..L−1),
  /// recomputed without a cache. last_only: [B, 1, V], the last position's.
  Tensor forward(const std::int64_t* ids, std::int64_t B, std::int64_t L, bool last_only = false);
  /// Appends L tokens per row (ids [B·L], positions cache.length .. + L − 1) to `cache` and returns
  /// their logits [B, L, V] ([B, 1, V] with last_only). The cache must come from make_cache with
  /// this batch size; ids out of [0, vocab_size) are an attn::Error (nothing appended then).
  Tensor forward_cached(const std::int64_t* ids, std::int64_t B, std::int64_t L, LlamaCache& cache,
                        bool last_only = false);

  std::vector<Parameter> parameters() const override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace attn::nn
