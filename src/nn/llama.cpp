// nn::LlamaForCausalLM (docs/generation.md): the residual stream of a pre-norm LLaMA decoder
// (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"; Hugging Face's
// LlamaForCausalLM for names and conventions) over the separately tested modules:
//   h = x + o_proj(attn(n1(x)))  with RoPE (half-split, rope_theta), GQA, causal
//   y = h + down(silu(gate(n2(h))) ∘ up(n2(h)))
//   logits = lm_head(norm(y))
// The uncached forward runs MultiheadAttention::forward (causal SDPA over the whole sequence);
// the cached one MultiheadAttention::forward_cached (append K/V, attn::decode).

#include "attn/nn/llama.hpp"

#include <utility>

#include "attn/error.hpp"
#include "attn/nn/embedding.hpp"
#include "attn/nn/feed_forward.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/multihead_attention.hpp"
#include "attn/nn/norm.hpp"
#include "nn/params.hpp"

namespace attn::nn {

namespace {

MhaConfig attention_config(const LlamaConfig& c, std::uint64_t seed) {
  MhaConfig m;
  m.embed_dim = c.hidden_size;
  m.num_heads = c.num_attention_heads;
  m.num_kv_heads = c.num_key_value_heads;
  m.bias = c.attention_bias;
  m.batch_first = true;
  RotaryConfig r;
  r.base = c.rope_theta;
  r.convention = RotaryConvention::half_split;
  m.rotary = r;
  m.seed = seed;
  return m;
}

FfnConfig mlp_config(const LlamaConfig& c, std::uint64_t seed) {
  FfnConfig f;
  f.dim = c.hidden_size;
  f.hidden = c.intermediate_size;
  f.activation = Activation::swiglu;
  f.bias = c.mlp_bias;
  f.seed = seed;
  return f;
}

struct Layer {
  RMSNorm<float> input_layernorm, post_attention_layernorm;
  MultiheadAttention<float> self_attn;
  FeedForward<float> mlp;
  Layer(const LlamaConfig& c, std::uint64_t seed)
      : input_layernorm(c.hidden_size, c.rms_norm_eps),
        post_attention_layernorm(c.hidden_size, c.rms_norm_eps),
        self_attn(attention_config(c, seed)),
        mlp(mlp_config(c, seed + 1)) {
    self_attn.set_training(false);
  }
};

void check_config(const LlamaConfig& c) {
  const std::pair<const char*, std::int64_t> sizes[] = {{"config.vocab_size", c.vocab_size},
                                                        {"config.hidden_size", c.hidden_size},
                                                        {"config.intermediate_size", c.intermediate_size},
                                                        {"config.num_hidden_layers", c.num_hidden_layers},
                                                        {"config.num_attention_heads", c.num_attention_heads},
                                                        {"config.num_key_value_heads", c.num_key_value_heads}};
  for (auto [name, v] : sizes)
    ATTN_CHECK(v >= 1, value, name, "= ", v, ", expected ≥ 1");
  ATTN_CHECK(c.hidden_size % c.num_attention_heads == 0, value, "config.num_attention_heads", "= ",
             c.num_attention_heads, ", expected a divisor of hidden_size = ", c.hidden_size);
  ATTN_CHECK(c.head_dim == 0 || c.head_dim == c.hidden_size / c.num_attention_heads, unsupported, "config.head_dim",
             "= ", c.head_dim, ", expected hidden_size / num_attention_heads = ", c.hidden_size / c.num_attention_heads);
}

}  // namespace

struct LlamaForCausalLM::Impl {
  LlamaConfig config;
  Embedding<float> embed_tokens;
  std::vector<std::unique_ptr<Layer>> layers;
  RMSNorm<float> norm;
  std::unique_ptr<Linear<float>> lm_head;  // owns its weight, or views embed_tokens' (tied)

  Impl(const LlamaConfig& c, std::uint64_t seed)
      : config(c), embed_tokens(c.vocab_size, c.hidden_size, seed, 1.0), norm(c.hidden_size, c.rms_norm_eps) {
    config.head_dim = c.hidden_size / c.num_attention_heads;
    for (std::int64_t i = 0; i < c.num_hidden_layers; ++i)
      layers.push_back(std::make_unique<Layer>(c, seed + 16 * static_cast<std::uint64_t>(i + 1)));
    if (c.tie_word_embeddings) {
      const Parameter w = embed_tokens.parameters().front();
      lm_head = std::make_unique<Linear<float>>(c.hidden_size, c.vocab_size, static_cast<float*>(w.value.data),
                                                static_cast<float*>(w.grad.data), nullptr, nullptr);
    } else {
      lm_head = std::make_unique<Linear<float>>(c.hidden_size, c.vocab_size, false, seed + 7);
    }
  }

  void check_ids(const std::int64_t* ids, std::int64_t B, std::int64_t L) const {
    ATTN_CHECK(B >= 1, value, "B", "= ", B, ", expected ≥ 1");
    ATTN_CHECK(L >= 1, value, "L", "= ", L, ", expected ≥ 1 token per row");
    for (std::int64_t m = 0; m < B * L; ++m)
      ATTN_CHECK(ids[m] >= 0 && ids[m] < config.vocab_size, value, "ids", "ids[", m, "] = ", ids[m],
                 ", expected 0 ≤ id < vocab_size = ", config.vocab_size);
  }

  // The residual stream x [B·L, E] through every layer; attention(layer, h) returns the attention
  // block's output for the normed rows h.
  template <class Attend>
  void run_layers(float* x, std::int64_t B, std::int64_t L, Attend&& attention) {
    const std::int64_t E = config.hidden_size, M = B * L;
    Tensor h(DType::f32, {M, E}), f(DType::f32, {M, E});
    float *hp = h.ptr<float>(), *fp = f.ptr<float>();
    for (std::size_t i = 0; i < layers.size(); ++i) {
      Layer& layer = *layers[i];
      layer.input_layernorm.forward(x, M, hp);
      const Tensor a = attention(i, TensorView(hp, DType::f32, {B, L, E}));
      const float* ap = a.ptr<float>();
      for (std::int64_t e = 0; e < M * E; ++e) x[e] += ap[e];
      layer.post_attention_layernorm.forward(x, M, hp);
      layer.mlp.forward(hp, M, fp);
      for (std::int64_t e = 0; e < M * E; ++e) x[e] += fp[e];
    }
  }

  // logits [B, L or 1, V] of the final rows.
  Tensor head(float* x, std::int64_t B, std::int64_t L, bool last_only) {
    const std::int64_t E = config.hidden_size, V = config.vocab_size, Lo = last_only ? 1 : L;
    Tensor rows(DType::f32, {B * Lo, E});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t l = 0; l < Lo; ++l) {
        const std::int64_t src = b * L + (last_only ? L - 1 : l);
        norm.forward(x + src * E, 1, rows.ptr<float>() + (b * Lo + l) * E);
      }
    Tensor logits(DType::f32, {B, Lo, V});
    lm_head->forward(rows.ptr<float>(), B * Lo, E, logits.ptr<float>(), V);
    return logits;
  }

  Tensor embed(const std::int64_t* ids, std::int64_t B, std::int64_t L) const {
    const std::int64_t E = config.hidden_size;
    Tensor x(DType::f32, {B * L, E});
    embed_tokens.forward(ids, B * L, x.ptr<float>(), E, false, "ids");
    return x;
  }
};

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& config, std::uint64_t seed) {
  check_config(config);
  impl_ = std::make_unique<Impl>(config, seed);
}
LlamaForCausalLM::~LlamaForCausalLM() = default;
LlamaForCausalLM::LlamaForCausalLM(LlamaForCausalLM&&) noexcept = default;
LlamaForCausalLM& LlamaForCausalLM::operator=(LlamaForCausalLM&&) noexcept = default;

const LlamaConfig& LlamaForCausalLM::config() const { return impl_->config; }
std::int64_t LlamaForCausalLM::vocab_size() const { return impl_->config.vocab_size; }

LlamaCache LlamaForCausalLM::make_cache(std::int64_t batch, std::int64_t capacity, DType dtype,
                                        KvLayout layout) const {
  ATTN_CHECK(batch >= 1, value, "batch", "= ", batch, ", expected ≥ 1");
  ATTN_CHECK(capacity >= 1, value, "capacity", "= ", capacity, ", expected ≥ 1");
  LlamaCache cache;
  for (const auto& layer : impl_->layers) {
    KvCacheConfig c;
    c.batch = batch;
    c.kv_heads = layer->self_attn.num_kv_heads();
    c.head_dim = c.v_head_dim = layer->self_attn.head_dim();
    c.capacity = capacity;
    c.dtype = dtype;
    c.layout = layout;
    c.growable = true;
    cache.emplace_back(c);
  }
  return cache;
}

Tensor LlamaForCausalLM::forward(const std::int64_t* ids, std::int64_t B, std::int64_t L, bool last_only) {
  Impl& m = *impl_;
  m.check_ids(ids, B, L);
  Tensor x = m.embed(ids, B, L);
  MhaOptions causal;
  causal.is_causal = true;
  m.run_layers(x.ptr<float>(), B, L, [&](std::size_t i, const TensorView& h) {
    MultiheadAttention<float>& attn = m.layers[i]->self_attn;
    Tensor out = attn.forward(h, h, h, causal).out;
    attn.release_saved();
    return out;
  });
  return m.head(x.ptr<float>(), B, L, last_only);
}

Tensor LlamaForCausalLM::forward_cached(const std::int64_t* ids, std::int64_t B, std::int64_t L, LlamaCache& cache,
                                        bool last_only) {
  Impl& m = *impl_;
  m.check_ids(ids, B, L);
  ATTN_CHECK(cache.size() == m.layers.size(), value, "cache", "has ", cache.size(),
             " layer caches, expected num_hidden_layers = ", m.layers.size(), " (use make_cache)");
  for (const KvCache& c : cache) {
    ATTN_CHECK(c.batch() == B, shape, "cache", "has batch = ", c.batch(), ", expected B = ", B);
    ATTN_CHECK(c.length(0) == cache.front().length(0), value, "cache",
               "has layers of different lengths, expected one length per row in every layer (a cache that an "
               "earlier call left half-written)");
  }
  Tensor x = m.embed(ids, B, L);
  m.run_layers(x.ptr<float>(), B, L, [&](std::size_t i, const TensorView& h) {
    return m.layers[i]->self_attn.forward_cached(h, h, h, cache[i]);
  });
  return m.head(x.ptr<float>(), B, L, last_only);
}

std::vector<Parameter> LlamaForCausalLM::parameters() const {
  const Impl& m = *impl_;
  std::vector<Parameter> p;
  detail::append_prefixed(p, "model.embed_tokens", m.embed_tokens);
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& layer = *m.layers[i];
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    detail::append_prefixed(p, prefix + "input_layernorm", layer.input_layernorm);
    for (Parameter q : layer.self_attn.parameters()) {
      if (q.name.rfind("out_proj.", 0) == 0) q.name = "o_proj." + q.name.substr(9);  // Hugging Face's name
      q.name = prefix + "self_attn." + q.name;
      p.push_back(std::move(q));
    }
    detail::append_prefixed(p, prefix + "post_attention_layernorm", layer.post_attention_layernorm);
    detail::append_prefixed(p, prefix + "mlp", layer.mlp);
  }
  detail::append_prefixed(p, "model.norm", m.norm);
  if (!m.config.tie_word_embeddings) detail::append_prefixed(p, "lm_head", *m.lm_head);
  return p;
}

}  // namespace attn::nn
