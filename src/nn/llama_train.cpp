// nn::TrainableLlama (include/attn/nn/llama_train.hpp, docs/training.md): LLaMA's decoder
// (Touvron et al. 2023; Hugging Face's LlamaForCausalLM for names and conventions) as a causal
// pre-norm TransformerEncoder — RMSNorm, RoPE half-split, GQA, SwiGLU — between a token
// embedding and an untied linear head, with explicit backward:
//   forward   x = E[ids];  h = stack(x);  z = h·W_headᵀ
//   backward  dh = dz·W_head (dW_head += dzᵀ·h);  dx = stack'(x, dh);  dE[ids] += dx
// and the softmax cross-entropy the LM trains on (loss = mean(lse(z) − z[target]),
// dz = (softmax(z) − onehot)/M).

#include "attn/nn/llama_train.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/module_state.hpp"
#include "attn/io/state_dict.hpp"
#include "nn/gemm.hpp"

namespace attn::nn {

namespace {

EncoderConfig stack_config(const LlamaConfig& c, std::uint64_t seed) {
  ATTN_CHECK(!c.tie_word_embeddings, unsupported, "config.tie_word_embeddings",
             "= true, expected false (TrainableLlama trains a separate lm_head)");
  ATTN_CHECK(c.attention_bias == c.mlp_bias, unsupported, "config.mlp_bias", "= ", c.mlp_bias,
             ", expected attention_bias = ", c.attention_bias, " (one bias switch covers both blocks here)");
  ATTN_CHECK(c.num_key_value_heads >= 1, value, "config.num_key_value_heads", "= ", c.num_key_value_heads,
             ", expected ≥ 1");
  ATTN_CHECK(c.head_dim == 0 || c.num_attention_heads < 1 || c.head_dim == c.hidden_size / c.num_attention_heads,
             unsupported, "config.head_dim", "= ", c.head_dim, ", expected hidden_size / num_attention_heads");
  EncoderConfig e;
  EncoderLayerConfig& l = e.layer;
  l.embed_dim = c.hidden_size;
  l.num_heads = c.num_attention_heads;
  l.num_kv_heads = c.num_key_value_heads;
  l.ffn_dim = c.intermediate_size;
  l.attention = "gqa";  // any num_kv_heads dividing num_heads, MHA included
  l.activation = Activation::swiglu;
  l.norm = NormKind::rms_norm;
  l.norm_first = true;
  l.norm_eps = c.rms_norm_eps;
  l.bias = c.attention_bias;
  RotaryConfig r;
  r.base = c.rope_theta;
  r.convention = RotaryConvention::half_split;
  l.rotary = r;
  l.seed = seed;
  e.num_layers = c.num_hidden_layers;
  e.final_norm = true;
  return e;
}

// The stack's torch-style names -> Hugging Face LLaMA's.
std::string hf_name(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return "model." + name;  // norm.weight
  const std::size_t dot = name.find('.', 7);
  const std::string prefix = "model." + name.substr(0, dot + 1), rest = name.substr(dot + 1);
  const std::pair<const char*, const char*> renames[] = {{"self_attn.out_proj.", "self_attn.o_proj."},
                                                         {"gate_proj.", "mlp.gate_proj."},
                                                         {"up_proj.", "mlp.up_proj."},
                                                         {"down_proj.", "mlp.down_proj."},
                                                         {"norm1.", "input_layernorm."},
                                                         {"norm2.", "post_attention_layernorm."}};
  for (auto [from, to] : renames) {
    const std::string f = from;
    if (rest.rfind(f, 0) == 0) return prefix + to + rest.substr(f.size());
  }
  return prefix + rest;  // self_attn.{q,k,v}_proj.*
}

}  // namespace

template <class T>
TrainableLlama<T>::TrainableLlama(const LlamaConfig& config, std::uint64_t seed)
    : config_(config),
      embed_(config.vocab_size, config.hidden_size, seed, 1.0),
      stack_(stack_config(config, seed + 16)),
      lm_head_(config.hidden_size, config.vocab_size, false, seed + 7) {
  config_.head_dim = config.hidden_size / config.num_attention_heads;
}

template <class T>
const T* TrainableLlama<T>::forward(const std::int64_t* ids, std::int64_t B, std::int64_t L) {
  ATTN_CHECK(B >= 1, value, "B", "= ", B, ", expected ≥ 1");
  ATTN_CHECK(L >= 1, value, "L", "= ", L, ", expected ≥ 1 token per row");
  const std::int64_t E = config_.hidden_size, V = config_.vocab_size, M = B * L;
  const DType dt = detail::dtype_of<T>();
  if (!x_.data() || x_.numel() != M * E) x_ = Tensor(dt, {M, E});
  embed_.forward(ids, M, x_.template ptr<T>(), E, false, "ids");
  ids_.assign(ids, ids + M);
  B_ = B;
  L_ = L;
  EncoderCall call;
  call.is_causal = true;
  h_ = stack_.forward(x_.template ptr<T>(), B, L, call);
  if (!logits_.data() || logits_.numel() != M * V) logits_ = Tensor(dt, {M, V});
  lm_head_.forward(h_, M, E, logits_.template ptr<T>(), V);
  return logits_.template ptr<T>();
}

template <class T>
void TrainableLlama<T>::backward(const T* dlogits) {
  ATTN_CHECK(h_ != nullptr, value, "dlogits", "backward called before forward");
  const std::int64_t E = config_.hidden_size, V = config_.vocab_size, M = B_ * L_;
  const DType dt = detail::dtype_of<T>();
  if (!dh_.data() || dh_.numel() != M * E) dh_ = Tensor(dt, {M, E});
  if (!dx_.data() || dx_.numel() != M * E) dx_ = Tensor(dt, {M, E});
  lm_head_.backward(h_, E, dlogits, V, M, dh_.template ptr<T>(), E, false);
  stack_.backward(x_.template ptr<T>(), dh_.template ptr<T>(), dx_.template ptr<T>(), false);
  embed_.backward(ids_.data(), M, dx_.template ptr<T>(), E);
}

template <class T>
std::vector<Parameter> TrainableLlama<T>::parameters() const {
  std::vector<Parameter> p;
  for (Parameter q : embed_.parameters()) {
    q.name = "model.embed_tokens." + q.name;
    p.push_back(std::move(q));
  }
  for (Parameter q : stack_.parameters()) {
    q.name = hf_name(q.name);
    p.push_back(std::move(q));
  }
  for (Parameter q : lm_head_.parameters()) {
    q.name = "lm_head." + q.name;
    p.push_back(std::move(q));
  }
  return p;
}

template <class T>
std::int64_t TrainableLlama<T>::saved_bytes() const {
  std::int64_t bytes = stack_.saved_bytes();
  for (const Tensor* t : {&x_, &logits_})
    if (t->data()) bytes += t->numel() * static_cast<std::int64_t>(sizeof(T));
  return bytes;
}

template <class T>
double cross_entropy(const T* logits, const std::int64_t* targets, std::int64_t M, std::int64_t V, T* dlogits) {
  ATTN_CHECK(M >= 1, value, "M", "= ", M, ", expected ≥ 1 row");
  ATTN_CHECK(V >= 1, value, "V", "= ", V, ", expected ≥ 1 class");
  for (std::int64_t m = 0; m < M; ++m)
    ATTN_CHECK(targets[m] >= 0 && targets[m] < V, value, "targets", "targets[", m, "] = ", targets[m],
               ", expected 0 ≤ target < V = ", V);
  // One exp per logit: exp(z − max) is kept in the gradient's row and scaled by 1/Σ there (it was
  // computed twice, once for Σ and once as exp(z − lse)). The row losses add in row order, so the
  // loss has the same bits on any thread count. dlogits may be logits itself (lm_train_step).
  std::vector<double> row_loss(static_cast<std::size_t>(M));
  const double inv_m = 1.0 / static_cast<double>(M);
#pragma omp parallel for schedule(static) if (M * V >= (1 << 15))
  for (std::int64_t m = 0; m < M; ++m) {
    const T* z = logits + m * V;
    double mx = static_cast<double>(z[0]);
    for (std::int64_t v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(z[v]));
    const std::int64_t t = targets[m];
    const double zt = static_cast<double>(z[t]);
    double s = 0;
    if (dlogits) {
      T* d = dlogits + m * V;
      for (std::int64_t v = 0; v < V; ++v) {
        const double e = std::exp(static_cast<double>(z[v]) - mx);
        s += e;
        d[v] = static_cast<T>(e);
      }
      const double r = inv_m / s;
      for (std::int64_t v = 0; v < V; ++v) d[v] = static_cast<T>(static_cast<double>(d[v]) * r);
      d[t] = static_cast<T>(std::exp(zt - mx) * r - inv_m);  // in fp64: p_t − 1 cancels
    } else {
      for (std::int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(z[v]) - mx);
    }
    row_loss[static_cast<std::size_t>(m)] = mx + std::log(s) - zt;
  }
  double total = 0;
  for (const double x : row_loss) total += x;
  return total * inv_m;
}

template <class T>
LmStepResult lm_train_step(TrainableLlama<T>& model, AdamW& optimizer, const std::int64_t* ids,
                           const std::int64_t* targets, std::int64_t B, std::int64_t L, double lr, double clip) {
  const std::int64_t V = model.config().vocab_size;
  model.zero_grad();
  // The logits are the model's own buffer, which backward no longer needs: the gradient goes there.
  T* z = const_cast<T*>(model.forward(ids, B, L));
  LmStepResult r;
  r.loss = cross_entropy(z, targets, B * L, V, z);
  model.backward(z);
  r.grad_norm = grad_norm(model);
  optimizer.step(lr, clip_scale(r.grad_norm, clip));  // clip_grad_norm's scaling inside AdamW's pass
  return r;
}

void save_llama_pretrained(const std::string& dir, const LlamaConfig& config, const Module& model) {
  namespace fs = std::filesystem;
  for (const Parameter& p : model.parameters())
    ATTN_CHECK(p.value.dtype == DType::f32, type, "model", "parameter ", p.name, " is ", dtype_name(p.value.dtype),
               ", expected f32 (model directories hold f32 weights)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  ATTN_CHECK(!ec && fs::is_directory(dir), system, "dir", "\"", dir, "\" cannot be created (", ec.message(), ")");
  const std::string config_path = (fs::path(dir) / "config.json").string();
  FILE* f = std::fopen(config_path.c_str(), "w");
  ATTN_CHECK(f != nullptr, system, "dir", "cannot write ", config_path);
  const std::string text = llama_config_json(config);
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ATTN_CHECK(std::fclose(f) == 0 && ok, system, "dir", "writing ", config_path, " failed");
  io::save_state_dict((fs::path(dir) / "model.safetensors").string(), io::state_dict(model));
}

template class TrainableLlama<float>;
template class TrainableLlama<double>;
template LmStepResult lm_train_step<float>(TrainableLlama<float>&, AdamW&, const std::int64_t*, const std::int64_t*,
                                           std::int64_t, std::int64_t, double, double);
template LmStepResult lm_train_step<double>(TrainableLlama<double>&, AdamW&, const std::int64_t*, const std::int64_t*,
                                            std::int64_t, std::int64_t, double, double);
template double cross_entropy<float>(const float*, const std::int64_t*, std::int64_t, std::int64_t, float*);
template double cross_entropy<double>(const double*, const std::int64_t*, std::int64_t, std::int64_t, double*);

}  // namespace attn::nn
