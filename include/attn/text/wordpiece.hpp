#pragma once
/// BERT's WordPiece tokenizer (docs/text.md), reading a `vocab.txt` (one token per line, the id is
/// the line number). encode() gives the same ids as the Hugging Face `tokenizers` pipeline that
/// BERT checkpoints ship (BertNormalizer, BertPreTokenizer, WordPiece, `[CLS] … [SEP]`):
///   1. special tokens ([PAD] [UNK] [CLS] [SEP] [MASK], when in the vocab) written literally in the
///      text are kept whole; the text between them goes through steps 2–5;
///   2. clean: drop U+0000, U+FFFD and control/format/private-use characters (general category
///      Cc, Cf, Co, Cs; tab, CR and LF count as whitespace); every whitespace character becomes a space;
///   3. put spaces around CJK ideographs; NFD and drop nonspacing marks (Mn); lower-case;
///   4. split on whitespace, and every punctuation character (P* or ASCII !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~)
///      is a word of its own;
///   5. WordPiece: each word becomes the longest vocab entries from the left, the pieces after the
///      first prefixed with "##"; a word with no such split, or longer than max_chars_per_word code
///      points, becomes [UNK];
///   6. [CLS] pieces… [SEP], truncated to max_length ids (the pieces are cut, [SEP] stays).
/// ICU answers the Unicode questions, with the Unicode versions `tokenizers` uses (docs/text.md §2).
/// Input is UTF-8; invalid UTF-8 is an attn::Error naming the text and the byte offset.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace attn::text {

/// How text is normalised. The defaults are BERT uncased (all-MiniLM-L6-v2, bert-base-uncased).
struct WordPieceOptions {
  bool lowercase = true;                  ///< lower-case the text (BertNormalizer lowercase)
  bool strip_accents = true;              ///< NFD, then drop nonspacing marks (BERT: same as lowercase)
  bool split_cjk = true;                  ///< every CJK ideograph is a word of its own
  std::int64_t max_chars_per_word = 100;  ///< longer words (in code points) become [UNK]
};

/// A batch of encoded texts: row-major [B, N], N = the longest row (≤ max_length); rows are padded with
/// [PAD] on the right, attention_mask is 1 on real tokens, 0 on padding.
struct Encoding {
  std::int64_t B = 0;
  std::int64_t N = 0;
  std::vector<std::int32_t> ids;             ///< [B, N]
  std::vector<std::int32_t> attention_mask;  ///< [B, N]
  std::vector<std::int64_t> lengths;         ///< [B]: tokens of each row, [CLS] and [SEP] included
};

class WordPiece {
 public:
  /// Reads `vocab_path`. Throws attn::Error naming the file when it cannot be read, is empty, or lacks
  /// one of [UNK], [CLS], [SEP], [PAD].
  explicit WordPiece(const std::string& vocab_path, WordPieceOptions options = {});
  /// From tokens in id order; `source` names them in error messages.
  WordPiece(std::vector<std::string> vocab, std::string source, WordPieceOptions options = {});

  // `argument` names the text in errors (invalid UTF-8): "text", "texts[3]", "line 7".

  /// Steps 1–4: the words (UTF-8) that WordPiece sees; special tokens appear as themselves.
  std::vector<std::string> pre_tokenize(std::string_view text, const std::string& argument = "text") const;
  /// Steps 1–5: token ids without [CLS]/[SEP] and without truncation.
  std::vector<std::int32_t> tokenize(std::string_view text, const std::string& argument = "text") const;
  /// Steps 1–6: [CLS] tokens… [SEP], at most max_length (≥ 2) ids.
  std::vector<std::int32_t> encode(std::string_view text, std::int64_t max_length,
                                   const std::string& argument = "text") const;
  /// encode() of every text (named "texts[b]" in errors), padded to the longest row of the batch.
  Encoding encode_batch(const std::vector<std::string>& texts, std::int64_t max_length) const;

  /// The id of `token`, or -1 when it is not in the vocab.
  std::int32_t token_to_id(std::string_view token) const;
  /// The token of `id` (ids are line numbers of vocab.txt); attn::Error when out of range.
  const std::string& id_to_token(std::int32_t id) const;
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(tokens_.size()); }

  std::int32_t unk_id() const { return unk_; }
  std::int32_t cls_id() const { return cls_; }
  std::int32_t sep_id() const { return sep_; }
  std::int32_t pad_id() const { return pad_; }
  const WordPieceOptions& options() const { return options_; }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  void word_pieces(std::string_view word, std::vector<std::int32_t>& out) const;
  template <class OnWord>
  void for_each_word(std::string_view text, const std::string& argument, OnWord&& on_word) const;

  WordPieceOptions options_;
  std::string source_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int32_t, Hash, std::equal_to<>> ids_;
  std::vector<std::string> specials_;  // tokens kept whole when they appear in the text
  std::int32_t unk_ = -1, cls_ = -1, sep_ = -1, pad_ = -1;
};

}  // namespace attn::text
