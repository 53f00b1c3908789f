// LLaMA config.json (docs/generation.md): the keys of Hugging Face's LlamaConfig that change the
// computation, read with nlohmann-json; a configuration this model does not implement (rope
// scaling, another activation, a head_dim of its own) is refused rather than run differently.

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attn/error.hpp"
#include "attn/nn/llama.hpp"
#include "attn/nn/llama_train.hpp"

namespace attn::nn {
namespace {

using nlohmann::json;

struct Reader {
  const json& j;
  const std::string& source;

  std::string arg(const char* key) const { return source + ": " + key; }

  std::int64_t integer(const char* key, std::optional<std::int64_t> fallback = std::nullopt) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      ATTN_CHECK(fallback.has_value(), value, arg(key), "is not given, expected a positive integer");
      return *fallback;
    }
    ATTN_CHECK(it->is_number_integer(), type, arg(key), "is ", it->dump(), ", expected an integer");
    const auto v = it->get<std::int64_t>();
    ATTN_CHECK(v >= 1, value, arg(key), "= ", v, ", expected ≥ 1");
    return v;
  }
  double number(const char* key, double fallback) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    ATTN_CHECK(it->is_number(), type, arg(key), "is ", it->dump(), ", expected a number");
    return it->get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    ATTN_CHECK(it->is_boolean(), type, arg(key), "is ", it->dump(), ", expected true or false");
    return it->get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    ATTN_CHECK(it->is_string(), type, arg(key), "is ", it->dump(), ", expected a string");
    return it->get<std::string>();
  }
  std::vector<std::int64_t> token_ids(const char* key) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return {};
    std::vector<std::int64_t> ids;
    const auto one = [&](const json& v) {
      ATTN_CHECK(v.is_number_integer() && v.get<std::int64_t>() >= 0, type, arg(key), "is ", it->dump(),
                 ", expected a token id ≥ 0 or a list of them");
      ids.push_back(v.get<std::int64_t>());
    };
    if (it->is_array())
      for (const json& v : *it) one(v);
    else
      one(*it);
    return ids;
  }
};

// rope_type of a rope_parameters / rope_scaling object ("type" in older files).
std::string rope_type(const json& r) {
  for (const char* key : {"rope_type", "type"}) {
    const auto it = r.find(key);
    if (it != r.end() && it->is_string()) return it->get<std::string>();
  }
  return "default";
}

}  // namespace

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::value, source, detail::concat("is not valid JSON (", e.what(), "), expected a config.json"));
  }
  ATTN_CHECK(j.is_object(), type, source, "is ", j.type_name(), ", expected a JSON object");
  const Reader r{j, source};

  const std::string model_type = r.string("model_type", "llama");
  ATTN_CHECK(model_type == "llama", unsupported, r.arg("model_type"), "is \"", model_type,
             "\", expected \"llama\" (the only architecture attn's causal LM implements)");
  const std::string act = r.string("hidden_act", "silu");
  ATTN_CHECK(act == "silu", unsupported, r.arg("hidden_act"), "is \"", act,
             "\", expected \"silu\" (LLaMA's SwiGLU MLP)");

  LlamaConfig c;
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.intermediate_size = r.integer("intermediate_size");
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.num_attention_heads = r.integer("num_attention_heads");
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads);
  ATTN_CHECK(c.hidden_size % c.num_attention_heads == 0, value, r.arg("num_attention_heads"), "= ",
             c.num_attention_heads, ", expected a divisor of hidden_size = ", c.hidden_size);
  ATTN_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, value, r.arg("num_key_value_heads"), "= ",
             c.num_key_value_heads, ", expected a divisor of num_attention_heads = ", c.num_attention_heads);
  c.head_dim = r.integer("head_dim", c.hidden_size / c.num_attention_heads);
  ATTN_CHECK(c.head_dim == c.hidden_size / c.num_attention_heads, unsupported, r.arg("head_dim"), "= ", c.head_dim,
             ", expected hidden_size / num_attention_heads = ", c.hidden_size / c.num_attention_heads,
             " (attn's attention blocks have head_dim = E / Hq)");
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  ATTN_CHECK(c.rms_norm_eps > 0, value, r.arg("rms_norm_eps"), "= ", c.rms_norm_eps, ", expected > 0");
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  c.attention_bias = r.boolean("attention_bias", false);
  c.mlp_bias = r.boolean("mlp_bias", false);
  c.max_position_embeddings = r.integer("max_position_embeddings", 2048);
  const std::vector<std::int64_t> bos = r.token_ids("bos_token_id");
  if (!bos.empty()) c.bos_token_id = bos.front();
  c.eos_token_ids = r.token_ids("eos_token_id");

  // RoPE: transformers 5 writes rope_parameters {rope_type, rope_theta}; 4.x wrote rope_theta at
  // the top and rope_scaling (null, or an object naming a scaling type).
  c.rope_theta = r.number("rope_theta", 10000.0);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    ATTN_CHECK(it->is_object(), type, r.arg(key), "is ", it->dump(), ", expected an object or null");
    const std::string type = rope_type(*it);
    ATTN_CHECK(type == "default", unsupported, r.arg(key), "has rope_type \"", type,
               "\", expected \"default\" (rope scaling such as linear, dynamic, yarn or llama3 is not implemented)");
    const Reader rr{*it, source};
    c.rope_theta = rr.number("rope_theta", c.rope_theta);
  }
  ATTN_CHECK(c.rope_theta > 0, value, r.arg("rope_theta"), "= ", c.rope_theta, ", expected > 0");
  for (std::int64_t id : c.eos_token_ids)
    ATTN_CHECK(id < c.vocab_size, value, r.arg("eos_token_id"), "has ", id, ", expected an id < vocab_size = ",
               c.vocab_size);
  return c;
}

LlamaConfig load_llama_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ATTN_CHECK(in.good(), system, path, "cannot be opened, expected a readable config.json");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_llama_config(text.str(), path);
}

std::string llama_config_json(const LlamaConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.hidden_size / c.num_attention_heads;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids.front();
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

}  // namespace attn::nn
