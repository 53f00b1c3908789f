#pragma once
/// Text generation with a causal LM (docs/generation.md): prefill of the prompt in one call, then
/// one token per step against the KV cache (or, for reference and benchmarks, recomputing the whole
/// sequence every step), with greedy or seeded sampling.
///
/// Sampling (temperature T > 0): logits/T; top_k > 0 keeps the k largest (ties: lower id first);
/// softmax in fp64; top_p < 1 keeps the smallest set of most probable tokens whose probability sums
/// to ≥ top_p; the token is drawn by inverse CDF over the kept tokens in that order with one uniform
/// from a SplitMix64 stream seeded by `seed`. T = 0 is greedy (argmax, lowest id on ties). The
/// draw depends only on the logits and the seed; attn::decode is bitwise thread-independent
/// (docs/contract.md §10) and the OpenBLAS projections split rows and columns, not sums, so a
/// seeded run repeats across runs and thread counts (tested with 1 and 2 threads).

#include <cstdint>
#include <functional>
#include <vector>

#include "attn/kv_cache.hpp"
#include "attn/nn/llama.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

struct SamplingConfig {
  double temperature = 0.0;  ///< 0 = greedy; else > 0
  std::int64_t top_k = 0;    ///< 0 = every token
  double top_p = 1.0;        ///< in (0, 1]
  std::uint64_t seed = 0;
};

/// Draws tokens from logits. Throws attn::Error naming the field for T < 0, top_k < 0 or top_p
/// outside (0, 1].
class Sampler {
 public:
  explicit Sampler(const SamplingConfig& config);
  /// The next token from logits [V] (f32); advances the random stream when sampling.
  std::int64_t next(const float* logits, std::int64_t V);
  const SamplingConfig& config() const { return config_; }

 private:
  SamplingConfig config_;
  std::uint64_t state_;
  std::vector<std::int64_t> order_;
  std::vector<double> prob_;
};

struct GenerateConfig {
  std::int64_t max_new_tokens = 32;
  SamplingConfig sampling;
  /// false: no cache, the whole sequence is recomputed for every new token.
  bool use_cache = true;
  DType kv_dtype = DType::f32;  ///< f32, bf16 or i8
  KvLayout kv_layout = KvLayout::contiguous;
  /// Generation stops after producing one of these (it is kept in the output).
  std::vector<std::int64_t> stop_tokens;
  /// Keep the prompt's logits [Lp, V] and each generated token's distribution [n, V].
  bool keep_logits = false;
};

struct GenerateResult {
  std::vector<std::int64_t> tokens;  ///< the new tokens (not the prompt)
  Tensor prompt_logits;              ///< [Lp, V] when keep_logits
  Tensor logits;                     ///< [n, V] when keep_logits: row t gave tokens[t]
  double prefill_seconds = 0;        ///< the prompt's forward (it gives the first token)
  double decode_seconds = 0;         ///< the steps after it
  std::int64_t decode_steps = 0;     ///< forward calls after the prefill (n − 1 unless stopped)
};

/// Generates up to max_new_tokens after `prompt` (≥ 1 token, ids < vocab size). `on_token` sees each
/// new token as soon as it is chosen; returning false stops the generation.
GenerateResult generate(LlamaForCausalLM& model, const std::vector<std::int64_t>& prompt, const GenerateConfig& config,
                        const std::function<bool(std::int64_t)>& on_token = {});

}  // namespace attn::nn
