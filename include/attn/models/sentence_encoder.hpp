#pragma once
/// attn::models::SentenceEncoder (docs/embeddings.md): sentence embeddings of a
/// sentence-transformers directory whose transformer is BERT (all-MiniLM-L6-v2 and its layout):
/// WordPiece ids (attn::text, vocab.txt) truncated at sentence_bert_config.json's max_seq_length,
/// the BertEncoder, mean pooling over each sentence's tokens, L2 normalisation when modules.json
/// lists a Normalize module — the numbers of SentenceTransformer(dir).encode(texts).
/// A call sorts its texts by token count and cuts the sorted list into batches of batch_size
/// packed sequences (no padding); the embeddings come back in the order of the texts.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attn/models/bert.hpp"
#include "attn/text/wordpiece.hpp"

namespace attn::models {

struct SentenceEncoderInfo {
  std::int64_t max_seq_length = 0;  ///< tokens per text at most, [CLS] and [SEP] included
  bool normalize = true;            ///< L2-normalised embeddings
  bool lowercase = true;            ///< the tokenizer lower-cases (tokenizer_config.json do_lower_case)
};

class SentenceEncoder {
 public:
  /// Reads `dir`: config.json, model.safetensors (BertEncoder), vocab.txt, and when present
  /// sentence_bert_config.json (max_seq_length; default: max_position_embeddings),
  /// 1_Pooling/config.json (must ask for mean pooling), modules.json (Normalize), tokenizer_config.json
  /// (do_lower_case). attn::Error naming the file (or tensor, or field) that is missing or wrong.
  /// precision bf16: the bf16 mode of BertEncoder (bf16 GEMMs on oneDNN, weights rounded once; cosine
  /// similarity ≥ 0.999 to the fp32 embedding on the test corpus); attn::Error (kind unsupported)
  /// where it cannot run (no oneDNN, or no oneDNN bf16 kernel for the CPU).
  explicit SentenceEncoder(const std::string& dir, nn::MatmulPrecision precision = nn::MatmulPrecision::f32);

  const SentenceEncoderInfo& info() const { return info_; }
  const BertEncoder& encoder() const { return bert_; }
  const text::WordPiece& tokenizer() const { return wp_; }
  std::int64_t dim() const { return bert_.dim(); }
  nn::MatmulPrecision precision() const { return bert_.precision(); }

  /// Called after each batch with (texts done, texts in all).
  using Progress = std::function<void(std::int64_t done, std::int64_t total)>;

  /// Embeddings [texts.size(), dim()] row-major, row i for texts[i]. batch_size ≥ 1;
  /// threads 0 = omp_get_max_threads(). Texts must be UTF-8 (attn::Error naming texts[i]).
  std::vector<float> encode(const std::vector<std::string>& texts, std::int64_t batch_size = 32, int threads = 0,
                            const Progress& progress = {}) const;

 private:
  SentenceEncoderInfo info_;
  BertEncoder bert_;
  text::WordPiece wp_;
};

}  // namespace attn::models
