// attn::models::SentenceEncoder: a sentence-transformers directory read, texts tokenized, sorted
// by length, packed in batches, encoded, mean-pooled and normalised
// (include/attn/models/sentence_encoder.hpp, docs/embeddings.md).

#include "attn/models/sentence_encoder.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "attn/error.hpp"

namespace attn::models {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The JSON of an optional file: null when the file does not exist; attn::Error when it is unreadable.
json optional_json(const fs::path& path) {
  if (!fs::exists(path)) return nullptr;
  std::ifstream in(path, std::ios::binary);
  ATTN_CHECK(in.good(), system, path.string(), "cannot open the file, expected a readable JSON file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    json j = json::parse(ss.str());
    ATTN_CHECK(j.is_object() || j.is_array(), value, path.string(), "holds ", j.type_name(),
               ", expected a JSON object or array");
    return j;
  } catch (const json::exception& e) {
    throw Error(ErrorKind::value, path.string(), attn::detail::concat("is not valid JSON (", e.what(), ")"));
  }
}

SentenceEncoderInfo read_info(const std::string& dir) {
  const fs::path d(dir);
  ATTN_CHECK(fs::is_directory(d), system, dir, "is not a directory, expected a sentence-transformers model directory");
  SentenceEncoderInfo info;
  const BertConfig config = BertConfig::from_file((d / "config.json").string());
  info.max_seq_length = config.max_position_embeddings;
  if (const json st = optional_json(d / "sentence_bert_config.json"); st.is_object() && st.contains("max_seq_length")) {
    const json& m = st["max_seq_length"];
    ATTN_CHECK(
        m.is_number_integer() && m.get<std::int64_t>() >= 2 && m.get<std::int64_t>() <= config.max_position_embeddings,
        value, (d / "sentence_bert_config.json").string(), "max_seq_length = ", m.dump(),
        ", expected an integer in [2, max_position_embeddings = ", config.max_position_embeddings, "]");
    info.max_seq_length = m.get<std::int64_t>();
  }
  if (const json pool = optional_json(d / "1_Pooling" / "config.json"); pool.is_object()) {
    for (const char* other : {"pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                              "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
      ATTN_CHECK(!pool.value(other, false), unsupported, (d / "1_Pooling" / "config.json").string(), other,
                 " = true, expected mean pooling only (pooling_mode_mean_tokens)");
    ATTN_CHECK(pool.value("pooling_mode_mean_tokens", true), unsupported, (d / "1_Pooling" / "config.json").string(),
               "pooling_mode_mean_tokens = false, expected mean pooling");
  }
  if (const json modules = optional_json(d / "modules.json"); modules.is_array()) {
    info.normalize = false;
    for (const json& m : modules)
      if (m.is_object() && m.value("type", "") == "sentence_transformers.models.Normalize") info.normalize = true;
  }
  if (const json tok = optional_json(d / "tokenizer_config.json"); tok.is_object() && tok.contains("do_lower_case"))
    info.lowercase = tok["do_lower_case"].is_boolean() ? tok["do_lower_case"].get<bool>() : true;
  return info;
}

text::WordPieceOptions tokenizer_options(const SentenceEncoderInfo& info) {
  text::WordPieceOptions o;
  o.lowercase = info.lowercase;
  o.strip_accents = info.lowercase;
  return o;
}

std::string vocab_path(const std::string& dir) {
  const fs::path p = fs::path(dir) / "vocab.txt";
  ATTN_CHECK(fs::exists(p), system, p.string(), "does not exist, expected the model's WordPiece vocab there");
  return p.string();
}

}  // namespace

SentenceEncoder::SentenceEncoder(const std::string& dir, nn::MatmulPrecision precision)
    : info_(read_info(dir)), bert_(dir, precision), wp_(vocab_path(dir), tokenizer_options(info_)) {}

std::vector<float> SentenceEncoder::encode(const std::vector<std::string>& texts, std::int64_t batch_size, int threads,
                                           const Progress& progress) const {
  ATTN_CHECK(batch_size >= 1, value, "batch_size", "= ", batch_size, ", expected ≥ 1");
  const std::int64_t n = static_cast<std::int64_t>(texts.size()), E = dim();
  std::vector<std::vector<std::int32_t>> ids(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i)
    ids[i] = wp_.encode(texts[i], info_.max_seq_length, "texts[" + std::to_string(i) + "]");
  // Longest first (as sentence-transformers); ties in input order, so the batches are deterministic.
  std::vector<std::int64_t> order(texts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return ids[a].size() > ids[b].size(); });
  std::vector<float> out(static_cast<std::size_t>(n * E));
  std::vector<std::int32_t> packed;
  std::vector<std::int64_t> cu;
  std::vector<float> pooled;
  for (std::int64_t b0 = 0; b0 < n; b0 += batch_size) {
    const std::int64_t b1 = std::min(n, b0 + batch_size);
    packed.clear();
    cu.assign(1, 0);
    for (std::int64_t j = b0; j < b1; ++j) {
      const auto& t = ids[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
      packed.insert(packed.end(), t.begin(), t.end());
      cu.push_back(static_cast<std::int64_t>(packed.size()));
    }
    pooled.resize(static_cast<std::size_t>((b1 - b0) * E));
    bert_.mean_pooled(packed.data(), cu, pooled.data(), threads);
    for (std::int64_t j = b0; j < b1; ++j) {
      const float* src = pooled.data() + (j - b0) * E;
      float* dst = out.data() + order[static_cast<std::size_t>(j)] * E;
      float scale = 1.0f;
      if (info_.normalize) {  // x / max(‖x‖₂, 1e-12), torch.nn.functional.normalize
        double ss = 0;
        for (std::int64_t k = 0; k < E; ++k) ss += static_cast<double>(src[k]) * src[k];
        scale = static_cast<float>(1.0 / std::max(std::sqrt(ss), 1e-12));
      }
      for (std::int64_t k = 0; k < E; ++k) dst[k] = src[k] * scale;
    }
    if (progress) progress(b1, n);
  }
  return out;
}

}  // namespace attn::models
