// Generation loop and sampler (docs/generation.md). The loop: one forward of the prompt (cached:
// forward_cached fills every layer's KvCache; uncached: forward), then per new token one
// forward_cached of that token, or a forward of the whole sequence so far. The sampler follows
// the usual temperature / top-k / top-p (Holtzman et al. 2020, "The Curious Case of Neural Text
// Degeneration") order, in fp64 and with a fixed tie order so that the draw is reproducible.

#include "attn/nn/generate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "attn/error.hpp"

namespace attn::nn {

namespace {

std::uint64_t splitmix64(std::uint64_t& state) {  // Steele et al. 2014 (as src/nn/init.hpp)
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::int64_t argmax(const float* logits, std::int64_t V) {
  std::int64_t best = 0;
  for (std::int64_t i = 1; i < V; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Sampler::Sampler(const SamplingConfig& config) : config_(config), state_(config.seed) {
  ATTN_CHECK(std::isfinite(config.temperature) && config.temperature >= 0, value, "temperature", "= ",
             config.temperature, ", expected ≥ 0 (0 = greedy)");
  ATTN_CHECK(config.top_k >= 0, value, "top_k", "= ", config.top_k, ", expected ≥ 0 (0 = every token)");
  ATTN_CHECK(config.top_p > 0 && config.top_p <= 1, value, "top_p", "= ", config.top_p, ", expected a value in (0, 1]");
}

std::int64_t Sampler::next(const float* logits, std::int64_t V) {
  ATTN_CHECK(V >= 1, value, "V", "= ", V, ", expected ≥ 1");
  if (config_.temperature == 0) return argmax(logits, V);
  // Candidates by logit, descending, lower id first on ties (a strict total order: reproducible).
  order_.resize(static_cast<std::size_t>(V));
  for (std::int64_t i = 0; i < V; ++i) order_[static_cast<std::size_t>(i)] = i;
  const auto before = [logits](std::int64_t a, std::int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const std::int64_t k = config_.top_k > 0 ? std::min(config_.top_k, V) : V;
  if (k < V) {
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), before);
    order_.resize(static_cast<std::size_t>(k));
  } else {
    std::sort(order_.begin(), order_.end(), before);
  }
  // Softmax of logits / T over the candidates, in fp64.
  const double inv_t = 1.0 / config_.temperature, top = logits[order_.front()];
  prob_.resize(order_.size());
  double total = 0;
  for (std::size_t i = 0; i < order_.size(); ++i) {
    prob_[i] = std::exp((static_cast<double>(logits[order_[i]]) - top) * inv_t);
    total += prob_[i];
  }
  // Nucleus: the shortest prefix (most probable first) holding ≥ top_p of the mass.
  std::size_t n = order_.size();
  if (config_.top_p < 1) {
    double cum = 0;
    for (std::size_t i = 0; i < order_.size(); ++i) {
      cum += prob_[i];
      if (cum >= config_.top_p * total) {
        n = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (std::size_t i = 0; i < n; ++i) kept += prob_[i];
  constexpr double kTwoPow53 = 9007199254740992.0;
  const double u = static_cast<double>(splitmix64(state_) >> 11) / kTwoPow53 * kept;
  double cum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    cum += prob_[i];
    if (u < cum) return order_[i];
  }
  return order_[n - 1];
}

GenerateResult generate(LlamaForCausalLM& model, const std::vector<std::int64_t>& prompt, const GenerateConfig& config,
                        const std::function<bool(std::int64_t)>& on_token) {
  ATTN_CHECK(!prompt.empty(), value, "prompt", "is empty, expected at least one token");
  ATTN_CHECK(config.max_new_tokens >= 0, value, "max_new_tokens", "= ", config.max_new_tokens, ", expected ≥ 0");
  Sampler sampler(config.sampling);
  const std::int64_t V = model.vocab_size(), Lp = static_cast<std::int64_t>(prompt.size());
  GenerateResult r;
  if (config.max_new_tokens == 0 && !config.keep_logits) return r;
  std::vector<std::int64_t> seq = prompt;
  LlamaCache cache;
  if (config.use_cache) cache = model.make_cache(1, Lp + std::max<std::int64_t>(config.max_new_tokens, 1), config.kv_dtype, config.kv_layout);
  std::vector<float> kept;  // each step's logits when keep_logits

  auto t0 = std::chrono::steady_clock::now();
  Tensor logits = config.use_cache ? model.forward_cached(prompt.data(), 1, Lp, cache, !config.keep_logits)
                                   : model.forward(prompt.data(), 1, Lp, !config.keep_logits);
  r.prefill_seconds = seconds_since(t0);
  const float* last = logits.ptr<float>() + (config.keep_logits ? (Lp - 1) * V : 0);
  if (config.keep_logits) {
    r.prompt_logits = Tensor(DType::f32, {Lp, V});
    std::memcpy(r.prompt_logits.data(), logits.data(), static_cast<std::size_t>(Lp * V) * sizeof(float));
  }
  t0 = std::chrono::steady_clock::now();
  for (std::int64_t t = 0; t < config.max_new_tokens; ++t) {
    if (t > 0) {
      logits = config.use_cache ? model.forward_cached(&seq.back(), 1, 1, cache, true)
                                : model.forward(seq.data(), 1, static_cast<std::int64_t>(seq.size()), true);
      last = logits.ptr<float>();
      ++r.decode_steps;
    }
    if (config.keep_logits) kept.insert(kept.end(), last, last + V);
    const std::int64_t token = sampler.next(last, V);
    r.tokens.push_back(token);
    seq.push_back(token);
    const bool go_on = on_token ? on_token(token) : true;
    if (!go_on || std::find(config.stop_tokens.begin(), config.stop_tokens.end(), token) != config.stop_tokens.end())
      break;
  }
  r.decode_seconds = seconds_since(t0);
  if (config.keep_logits && !r.tokens.empty()) {
    const auto n = static_cast<std::int64_t>(r.tokens.size());
    r.logits = Tensor(DType::f32, {n, V});
    std::memcpy(r.logits.data(), kept.data(), kept.size() * sizeof(float));
  }
  return r;
}

}  // namespace attn::nn
