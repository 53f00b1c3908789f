// BERT's tokenizer: basic tokenization (clean, CJK split, accent strip, lower-case, whitespace and
// punctuation split), then greedy longest-match-first WordPiece (Wu et al. 2016, "Google's Neural
// Machine Translation System", §4.1; Devlin et al. 2019, BERT). Behaviour — including what counts as
// whitespace, control and punctuation, and special tokens written in the text — follows the Hugging
// Face `tokenizers` BertNormalizer / BertPreTokenizer / WordPiece, which BERT checkpoints ship in
// tokenizer.json; docs/text.md lists the rules.

#include "attn/text/wordpiece.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "attn/error.hpp"
#include "text/unicode.hpp"

namespace attn::text {
namespace {

constexpr const char* kRequired[] = {"[UNK]", "[CLS]", "[SEP]", "[PAD]"};
// Kept whole when written in the text (BertTokenizer's never_split, `tokenizers`' added tokens).
constexpr const char* kSpecial[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
constexpr std::string_view kContinuation = "##";

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ATTN_CHECK(in.is_open(), system, path, "cannot open the vocab file (", std::strerror(errno),
             "); expected a vocab.txt with one token per line");
  std::stringstream buf;
  buf << in.rdbuf();
  ATTN_CHECK(!in.bad(), system, path, "could not be read (error reading the vocab file), expected a readable file");
  const std::string all = buf.str();
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < all.size()) {
    std::size_t end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    lines.emplace_back(all, start, end - start);
    start = end + 1;
  }
  return lines;
}

bool is_utf8_continuation(char b) { return (static_cast<unsigned char>(b) & 0xC0) == 0x80; }

std::int64_t count_code_points(std::string_view s) {
  std::int64_t n = 0;
  for (char b : s) n += is_utf8_continuation(b) ? 0 : 1;
  return n;
}

}  // namespace

WordPiece::WordPiece(const std::string& vocab_path, WordPieceOptions options)
    : WordPiece(read_lines(vocab_path), vocab_path, options) {}

WordPiece::WordPiece(std::vector<std::string> vocab, std::string source, WordPieceOptions options)
    : options_(options), source_(std::move(source)), tokens_(std::move(vocab)) {
  ATTN_CHECK(!tokens_.empty(), value, source_, "the vocab is empty; expected one token per line");
  ATTN_CHECK(tokens_.size() <= static_cast<std::size_t>(INT32_MAX), value, source_, "the vocab has ", tokens_.size(),
             " tokens, expected fewer than 2^31");
  ATTN_CHECK(options_.max_chars_per_word > 0, value, "max_chars_per_word", "= ", options_.max_chars_per_word,
             ", expected > 0");
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    std::string& t = tokens_[i];
    // Trailing whitespace (a CR of CRLF files included) is not part of a token; a token listed twice
    // gets the later line's id, as in `tokenizers`.
    while (!t.empty() &&
           (t.back() == ' ' || t.back() == '\t' || t.back() == '\r' || t.back() == '\v' || t.back() == '\f')) {
      t.pop_back();
    }
    ids_.insert_or_assign(t, static_cast<std::int32_t>(i));
  }
  std::string missing;
  for (const char* r : kRequired) {
    if (token_to_id(r) < 0) missing += missing.empty() ? r : std::string(", ") + r;
  }
  ATTN_CHECK(missing.empty(), value, source_, "the vocab (", tokens_.size(), " tokens) has no ", missing,
             ", expected each of [UNK], [CLS], [SEP], [PAD] on a line of its own (a BERT vocab needs them)");
  unk_ = token_to_id("[UNK]");
  cls_ = token_to_id("[CLS]");
  sep_ = token_to_id("[SEP]");
  pad_ = token_to_id("[PAD]");
  for (const char* s : kSpecial) {
    if (token_to_id(s) >= 0) specials_.emplace_back(s);
  }
}

std::int32_t WordPiece::token_to_id(std::string_view token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

const std::string& WordPiece::id_to_token(std::int32_t id) const {
  ATTN_CHECK(id >= 0 && id < vocab_size(), value, "id", "= ", id, ", expected in [0, ", vocab_size(), ") (vocab of ", source_,
             ")");
  return tokens_[static_cast<std::size_t>(id)];
}

// Calls on_word(word, is_special) for each word of `text` in order (steps 1-4 of wordpiece.hpp);
// `argument` names the text in errors.
template <class OnWord>
void WordPiece::for_each_word(std::string_view text, const std::string& argument, OnWord&& on_word) const {
  const std::u32string all = unicode::decode_utf8(text, argument);
  std::string word;
  auto flush = [&] {
    if (!word.empty()) on_word(std::string_view(word), false);
    word.clear();
  };
  auto segment = [&](std::u32string_view raw) {
    if (raw.empty()) return;
    // 2. clean, 3. CJK split
    std::u32string s;
    s.reserve(raw.size());
    for (char32_t c : raw) {
      if (unicode::is_control(c)) continue;
      if (unicode::is_whitespace(c)) {
        s.push_back(U' ');
      } else if (options_.split_cjk && unicode::is_cjk(c)) {
        s.append({U' ', c, U' '});
      } else {
        s.push_back(c);
      }
    }
    // 3. accents, case
    if (options_.strip_accents) s = unicode::strip_accents(s);
    if (options_.lowercase) s = unicode::lowercase(s);
    // 4. whitespace and punctuation split
    for (char32_t c : s) {
      if (unicode::is_whitespace(c)) {
        flush();
      } else if (unicode::is_punctuation(c)) {
        flush();
        unicode::append_utf8(c, word);
        flush();
      } else {
        unicode::append_utf8(c, word);
      }
    }
    flush();
  };
  // 1. special tokens written in the text (ASCII): leftmost, then longest
  const std::u32string_view view(all);
  std::size_t done = 0;
  for (std::size_t at = view.find(U'['); at != std::u32string_view::npos; at = view.find(U'[', at + 1)) {
    const std::string* best = nullptr;
    for (const std::string& sp : specials_) {
      if ((best == nullptr || sp.size() > best->size()) && at + sp.size() <= view.size() &&
          std::equal(sp.begin(), sp.end(), view.begin() + static_cast<std::ptrdiff_t>(at),
                     [](char a, char32_t b) { return static_cast<char32_t>(a) == b; })) {
        best = &sp;
      }
    }
    if (best == nullptr) continue;
    segment(view.substr(done, at - done));
    on_word(std::string_view(*best), true);
    done = at + best->size();
    at = done - 1;
  }
  segment(view.substr(done));
}

void WordPiece::word_pieces(std::string_view word, std::vector<std::int32_t>& out) const {
  if (count_code_points(word) > options_.max_chars_per_word) {
    out.push_back(unk_);
    return;
  }
  const std::size_t mark = out.size();
  std::string piece;
  for (std::size_t start = 0; start < word.size();) {
    // the longest vocab entry word[start:end) ("##" + it after the first piece)
    std::int32_t id = -1;
    std::size_t end = word.size();
    while (end > start) {
      const std::string_view sub = word.substr(start, end - start);
      if (start == 0) {
        id = token_to_id(sub);
      } else {
        piece.assign(kContinuation);
        piece.append(sub);
        id = token_to_id(piece);
      }
      if (id >= 0) break;
      do --end;
      while (end > start && is_utf8_continuation(word[end]));
    }
    if (id < 0) {  // no split into vocab entries: the whole word is unknown
      out.resize(mark);
      out.push_back(unk_);
      return;
    }
    out.push_back(id);
    start = end;
  }
}

std::vector<std::string> WordPiece::pre_tokenize(std::string_view text, const std::string& argument) const {
  std::vector<std::string> words;
  for_each_word(text, argument, [&](std::string_view w, bool) { words.emplace_back(w); });
  return words;
}

std::vector<std::int32_t> WordPiece::tokenize(std::string_view text, const std::string& argument) const {
  std::vector<std::int32_t> ids;
  for_each_word(text, argument, [&](std::string_view w, bool special) {
    if (special) {
      ids.push_back(token_to_id(w));
    } else {
      word_pieces(w, ids);
    }
  });
  return ids;
}

std::vector<std::int32_t> WordPiece::encode(std::string_view text, std::int64_t max_length,
                                            const std::string& argument) const {
  ATTN_CHECK(max_length >= 2, value, "max_length", "= ", max_length, ", expected >= 2 (room for [CLS] and [SEP])");
  std::vector<std::int32_t> pieces = tokenize(text, argument);
  const auto keep = static_cast<std::size_t>(max_length - 2);
  if (pieces.size() > keep) pieces.resize(keep);
  std::vector<std::int32_t> ids;
  ids.reserve(pieces.size() + 2);
  ids.push_back(cls_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.push_back(sep_);
  return ids;
}

Encoding WordPiece::encode_batch(const std::vector<std::string>& texts, std::int64_t max_length) const {
  std::vector<std::vector<std::int32_t>> rows;
  rows.reserve(texts.size());
  Encoding e;
  e.B = static_cast<std::int64_t>(texts.size());
  for (std::size_t b = 0; b < texts.size(); ++b) {
    rows.push_back(encode(texts[b], max_length, detail::concat("texts[", b, "]")));
    e.N = std::max<std::int64_t>(e.N, static_cast<std::int64_t>(rows.back().size()));
  }
  e.ids.assign(static_cast<std::size_t>(e.B * e.N), pad_);
  e.attention_mask.assign(static_cast<std::size_t>(e.B * e.N), 0);
  e.lengths.resize(texts.size());
  for (std::size_t b = 0; b < rows.size(); ++b) {
    const std::size_t row = b * static_cast<std::size_t>(e.N);
    std::copy(rows[b].begin(), rows[b].end(), e.ids.begin() + static_cast<std::ptrdiff_t>(row));
    std::fill_n(e.attention_mask.begin() + static_cast<std::ptrdiff_t>(row), rows[b].size(), 1);
    e.lengths[b] = static_cast<std::int64_t>(rows[b].size());
  }
  return e;
}

}  // namespace attn::text
