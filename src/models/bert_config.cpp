// BertConfig::from_file: the fields of a Hugging Face BERT config.json (include/attn/models/bert.hpp).

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attn/error.hpp"
#include "attn/models/bert.hpp"

namespace attn::models {
namespace {

using nlohmann::json;

std::int64_t size_field(const json& j, const std::string& path, const char* key) {
  const auto it = j.find(key);
  ATTN_CHECK(it != j.end(), value, path, "has no \"", key, "\", expected it (a BERT config.json)");
  ATTN_CHECK(it->is_number_integer() && it->get<std::int64_t>() >= 1, value, path, "\"", key, "\" = ", it->dump(),
             ", expected an integer ≥ 1");
  return it->get<std::int64_t>();
}

}  // namespace

BertConfig BertConfig::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ATTN_CHECK(in.good(), system, path, "cannot open the file, expected a BERT config.json there");
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    throw Error(ErrorKind::value, path,
                attn::detail::concat("is not valid JSON (", e.what(), "), expected a BERT config.json"));
  }
  ATTN_CHECK(j.is_object(), value, path, "holds ", j.type_name(), ", expected a JSON object");
  const auto type = j.find("model_type");
  ATTN_CHECK(type != j.end() && type->is_string() && type->get<std::string>() == "bert", value, path,
             "model_type = ", type == j.end() ? std::string("(absent)") : type->dump(),
             ", expected \"bert\" (only BERT encoders are supported)");
  const auto act = j.find("hidden_act");
  ATTN_CHECK(act == j.end() || (act->is_string() && act->get<std::string>() == "gelu"), value, path,
             "hidden_act = ", act == j.end() ? std::string("(absent)") : act->dump(), ", expected \"gelu\"");
  const auto pos = j.find("position_embedding_type");
  ATTN_CHECK(pos == j.end() || (pos->is_string() && pos->get<std::string>() == "absolute"), value, path,
             "position_embedding_type = ", pos == j.end() ? std::string("(absent)") : pos->dump(),
             ", expected \"absolute\"");
  BertConfig c;
  c.vocab_size = size_field(j, path, "vocab_size");
  c.hidden_size = size_field(j, path, "hidden_size");
  c.num_hidden_layers = size_field(j, path, "num_hidden_layers");
  c.num_attention_heads = size_field(j, path, "num_attention_heads");
  c.intermediate_size = size_field(j, path, "intermediate_size");
  c.max_position_embeddings = size_field(j, path, "max_position_embeddings");
  c.type_vocab_size = size_field(j, path, "type_vocab_size");
  ATTN_CHECK(c.hidden_size % c.num_attention_heads == 0, value, path, "num_attention_heads = ", c.num_attention_heads,
             ", expected a divisor of hidden_size = ", c.hidden_size);
  if (const auto eps = j.find("layer_norm_eps"); eps != j.end()) {
    ATTN_CHECK(eps->is_number() && eps->get<double>() > 0, value, path, "layer_norm_eps = ", eps->dump(),
               ", expected a number > 0");
    c.layer_norm_eps = eps->get<double>();
  }
  return c;
}

}  // namespace attn::models
