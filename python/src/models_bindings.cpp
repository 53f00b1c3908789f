// attn._core.CausalLM: nn::LlamaForCausalLM and nn::generate (include/attn/nn/llama.hpp,
// generate.hpp) for python/attn/models/causal_lm.py. Token ids cross as Python ints, logits come
// back as float32 numpy arrays owning their Tensor. The GIL is released while the model runs.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/generate.hpp"
#include "attn/nn/llama.hpp"
#include "attn/nn/llama_train.hpp"
#include "attn/nn/optim.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {
namespace {

// The tensor as a numpy array owning it; drop_batch removes a leading axis of size 1.
nb::object to_numpy(Tensor t, bool drop_batch = false) {
  if (!t.data()) return nb::none();
  auto* owned = new Tensor(std::move(t));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  const TensorView& v = owned->view();
  std::vector<std::size_t> shape(v.shape.begin() + (drop_batch ? 1 : 0), v.shape.begin() + v.rank);
  return nb::ndarray<nb::numpy, float>(owned->data(), shape.size(), shape.data(), owner).cast();
}

DType kv_dtype_of(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::f32;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "i8" || s == "int8") return DType::i8;
  throw Error(ErrorKind::value, "kv_dtype", "is '" + s + "', expected 'f32', 'bf16' or 'i8'");
}

nb::dict config_dict(const nn::LlamaConfig& c) {
  nb::dict d;
  d["vocab_size"] = c.vocab_size;
  d["hidden_size"] = c.hidden_size;
  d["intermediate_size"] = c.intermediate_size;
  d["num_hidden_layers"] = c.num_hidden_layers;
  d["num_attention_heads"] = c.num_attention_heads;
  d["num_key_value_heads"] = c.num_key_value_heads;
  d["head_dim"] = c.head_dim;
  d["rms_norm_eps"] = c.rms_norm_eps;
  d["rope_theta"] = c.rope_theta;
  d["tie_word_embeddings"] = c.tie_word_embeddings;
  d["attention_bias"] = c.attention_bias;
  d["mlp_bias"] = c.mlp_bias;
  d["max_position_embeddings"] = c.max_position_embeddings;
  d["bos_token_id"] = c.bos_token_id ? nb::cast(*c.bos_token_id) : nb::none();
  d["eos_token_id"] = c.eos_token_ids;
  return d;
}

}  // namespace

void register_models(nb::module_& m) {
  nb::class_<nn::LlamaForCausalLM>(m, "CausalLM",
                                   "A LLaMA-style causal LM loaded from a model directory (attn::nn::LlamaForCausalLM).")
      .def(
          "__init__",
          [](nn::LlamaForCausalLM* self, const std::string& model_dir) {
            new (self) nn::LlamaForCausalLM(nn::LlamaForCausalLM::from_pretrained(model_dir));
          },
          "model_dir"_a)
      .def_prop_ro("config", [](const nn::LlamaForCausalLM& lm) { return config_dict(lm.config()); })
      .def(
          "logits",
          [](nn::LlamaForCausalLM& lm, const std::vector<std::int64_t>& ids) {
            ATTN_CHECK(!ids.empty(), value, "ids", "is empty, expected at least one token");
            Tensor t;
            {
              nb::gil_scoped_release release;
              t = lm.forward(ids.data(), 1, static_cast<std::int64_t>(ids.size()));
            }
            return to_numpy(std::move(t), true);
          },
          "ids"_a, "Logits [L, V] of the sequence, recomputed without a cache.")
      .def(
          "cached_logits",
          [](nn::LlamaForCausalLM& lm, const std::vector<std::int64_t>& ids, std::int64_t prefill,
             const std::string& kv_dtype, bool paged) {
            const auto L = static_cast<std::int64_t>(ids.size());
            ATTN_CHECK(prefill >= 1 && prefill <= L, value, "prefill", "= ", prefill, ", expected 1 ≤ prefill ≤ ",
                       L, " = len(ids)");
            const DType dt = kv_dtype_of(kv_dtype);
            Tensor all(DType::f32, {L, lm.vocab_size()});
            {
              nb::gil_scoped_release release;
              nn::LlamaCache cache = lm.make_cache(1, L, dt, paged ? KvLayout::paged : KvLayout::contiguous);
              const std::int64_t V = lm.vocab_size();
              for (std::int64_t t = 0; t < L;) {
                const std::int64_t n = t == 0 ? prefill : 1;
                const Tensor l = lm.forward_cached(ids.data() + t, 1, n, cache);
                std::copy(l.ptr<float>(), l.ptr<float>() + n * V, all.ptr<float>() + t * V);
                t += n;
              }
            }
            return to_numpy(std::move(all));
          },
          "ids"_a, "prefill"_a, "kv_dtype"_a = "f32", "paged"_a = false,
          "Logits [L, V] with the KV cache: the first `prefill` tokens in one call, then one token per call.")
      .def(
          "generate",
          [](nn::LlamaForCausalLM& lm, const std::vector<std::int64_t>& prompt, std::int64_t max_new_tokens,
             double temperature, std::int64_t top_k, double top_p, std::uint64_t seed, bool use_cache,
             const std::string& kv_dtype, bool paged, const std::vector<std::int64_t>& stop_tokens,
             bool return_logits) {
            nn::GenerateConfig g;
            g.max_new_tokens = max_new_tokens;
            g.sampling = {temperature, top_k, top_p, seed};
            g.use_cache = use_cache;
            g.kv_dtype = kv_dtype_of(kv_dtype);
            g.kv_layout = paged ? KvLayout::paged : KvLayout::contiguous;
            g.stop_tokens = stop_tokens;
            g.keep_logits = return_logits;
            nn::GenerateResult r;
            {
              nb::gil_scoped_release release;
              r = nn::generate(lm, prompt, g);
            }
            nb::dict d;
            d["tokens"] = r.tokens;
            d["prefill_seconds"] = r.prefill_seconds;
            d["decode_seconds"] = r.decode_seconds;
            d["decode_steps"] = r.decode_steps;
            d["prompt_logits"] = to_numpy(std::move(r.prompt_logits));
            d["logits"] = to_numpy(std::move(r.logits));
            return d;
          },
          "prompt_ids"_a, "max_new_tokens"_a, "temperature"_a, "top_k"_a, "top_p"_a, "seed"_a, "use_cache"_a,
          "kv_dtype"_a, "paged"_a, "stop_tokens"_a, "return_logits"_a);

  // nn::TrainableLlama on random windows of one token stream (the loop of `attn train lm`,
  // tools/attn/train_lm.cpp, without its evaluation), saved as a model directory.
  m.def(
      "train_causal_lm",
      [](const std::vector<std::int64_t>& tokens, const std::string& out_dir, std::int64_t vocab_size,
         std::int64_t hidden_size, std::int64_t intermediate_size, std::int64_t num_layers, std::int64_t num_heads,
         std::int64_t num_kv_heads, double rope_theta, std::int64_t steps, std::int64_t batch, std::int64_t seq_len,
         double lr, std::int64_t warmup, double weight_decay, double clip, std::uint64_t seed) {
        ATTN_CHECK(steps >= 1 && batch >= 1 && seq_len >= 1, value, "steps", "steps = ", steps, ", batch = ", batch,
                   ", seq_len = ", seq_len, ", expected all ≥ 1");
        const auto n = static_cast<std::int64_t>(tokens.size());
        ATTN_CHECK(n > seq_len + 1, value, "tokens", "has ", n, " tokens, expected more than seq_len + 1 = ",
                   seq_len + 1);
        nn::LlamaConfig c;
        c.vocab_size = vocab_size;
        c.hidden_size = hidden_size;
        c.intermediate_size = intermediate_size;
        c.num_hidden_layers = num_layers;
        c.num_attention_heads = num_heads;
        c.num_key_value_heads = num_kv_heads;
        c.rms_norm_eps = 1e-5;
        c.rope_theta = rope_theta;
        c.max_position_embeddings = seq_len;
        std::vector<double> losses;
        {
          nb::gil_scoped_release release;
          nn::TrainableLlama<float> model(c, seed);
          nn::AdamWConfig ac;
          ac.weight_decay = weight_decay;
          nn::AdamW opt(model, ac);
          const nn::LrSchedule sched{lr, warmup, steps, 0.1 * lr};
          std::vector<std::int64_t> ids(static_cast<std::size_t>(batch * seq_len)), targets(ids.size());
          for (std::int64_t step = 0; step < steps; ++step) {
            std::mt19937_64 rng(seed * 1000003ull + static_cast<std::uint64_t>(step));
            for (std::int64_t b = 0; b < batch; ++b) {
              const auto start = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(n - seq_len));
              for (std::int64_t l = 0; l < seq_len; ++l) {
                ids[static_cast<std::size_t>(b * seq_len + l)] = tokens[static_cast<std::size_t>(start + l)];
                targets[static_cast<std::size_t>(b * seq_len + l)] = tokens[static_cast<std::size_t>(start + l + 1)];
              }
            }
            losses.push_back(
                nn::lm_train_step(model, opt, ids.data(), targets.data(), batch, seq_len, sched.at(step), clip).loss);
          }
          nn::save_llama_pretrained(out_dir, c, model);
        }
        return losses;
      },
      "tokens"_a, "out_dir"_a, "vocab_size"_a, "hidden_size"_a, "intermediate_size"_a, "num_layers"_a, "num_heads"_a,
      "num_kv_heads"_a, "rope_theta"_a, "steps"_a, "batch"_a, "seq_len"_a, "lr"_a, "warmup"_a, "weight_decay"_a,
      "clip"_a, "seed"_a);
}

}  // namespace attn::py
