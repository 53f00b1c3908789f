// attn._core.CausalLM: nn::LlamaForCausalLM and nn::generate (include/attn/nn/llama.hpp,
// generate.hpp) for python/attn/models/causal_lm.py. Token ids cross as Python ints, logits come
// back as float32 numpy arrays owning their Tensor. The GIL is released while the model runs.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/generate.hpp"
#include "attn/nn/llama.hpp"

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
}

}  // namespace attn::py
