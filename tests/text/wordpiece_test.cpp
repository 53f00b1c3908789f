// WordPiece on a small vocab written here: each rule of include/attn/text/wordpiece.hpp with ids
// worked out by hand, and the errors for bad vocab files and bad input. Equality with the Hugging
// Face tokenizer on the real vocab is python/tests/test_text.py.

#include "attn/text/wordpiece.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "attn/error.hpp"

namespace {

using attn::text::WordPiece;
using Ids = std::vector<std::int32_t>;

// ids:               0        1        2        3        4         5        6        7      8
const std::vector<std::string> kVocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff",
                                         // 9      10    11    12   13   14   15     16      17      18    19
                                         "##able", "a", "##a", ",", "!", "中", "cafe", "naive", "σ", "##α", "##σ",
                                         // 20   21       22   23   24
                                         "i", "##stan", "[", "]", "sep"};
enum : std::int32_t { PAD, UNK, CLS, SEP, MASK, HELLO, WORLD, UN, AFF, ABLE, A, CA, COMMA, BANG, ZH, CAFE, NAIVE };

WordPiece vocab() { return WordPiece(kVocab, "test vocab"); }

std::filesystem::path write_file(const std::string& name, const std::string& contents) {
  const auto path = std::filesystem::temp_directory_path() / ("attn_wordpiece_" + name);
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const attn::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(WordPiece, CleansSplitsAndLowerCases) {
  const WordPiece wp = vocab();
  EXPECT_EQ(wp.encode("Hello, World!", 256), (Ids{CLS, HELLO, COMMA, WORLD, BANG, SEP}));
  EXPECT_EQ(wp.tokenize("  hello\t\nworld\r\u00a0\u3000hello "), (Ids{HELLO, WORLD, HELLO}));
  // control and format characters vanish (they do not split words); U+0000 and U+FFFD too
  EXPECT_EQ(wp.tokenize("hel\x01lo wor\u200bld hel\xef\xbf\xbdlo"), (Ids{HELLO, WORLD, HELLO}));
  EXPECT_EQ(wp.tokenize(std::string("hel\0lo", 6)), (Ids{HELLO}));
  EXPECT_EQ(wp.tokenize("!!,!"), (Ids{BANG, BANG, COMMA, BANG}));
  // Unicode punctuation is a word of its own (here unknown)
  EXPECT_EQ(wp.tokenize("\u00abhello\u00bb"), (Ids{UNK, HELLO, UNK}));
  EXPECT_EQ(wp.tokenize(""), Ids{});
  EXPECT_EQ(wp.encode("", 256), (Ids{CLS, SEP}));
}

TEST(WordPiece, StripsAccentsAndFoldsCase) {
  const WordPiece wp = vocab();
  EXPECT_EQ(wp.tokenize("Café NAÏVE"), (Ids{CAFE, NAIVE}));
  EXPECT_EQ(wp.tokenize("cafe\u0301"), (Ids{CAFE}));  // combining acute, already decomposed
  // Σ lower-cases to σ everywhere (no final-sigma rule, as in `tokenizers`)
  EXPECT_EQ(wp.tokenize("ΣΑΣ"), (Ids{17, 18, 19}));
  // İ: NFD gives I + U+0307, the dot is stripped, I lower-cases to i
  EXPECT_EQ(wp.tokenize("İstan"), (Ids{20, 21}));
}

TEST(WordPiece, GreedyLongestMatch) {
  const WordPiece wp = vocab();
  EXPECT_EQ(wp.tokenize("unaffable"), (Ids{UN, AFF, ABLE}));
  EXPECT_EQ(wp.tokenize("unaffablex"), (Ids{UNK}));  // no "##x": the whole word is unknown
  EXPECT_EQ(wp.tokenize("aaa"), (Ids{A, CA, CA}));
  EXPECT_EQ(wp.tokenize(std::string(100, 'a')).size(), 100u);
  EXPECT_EQ(wp.tokenize(std::string(101, 'a')), (Ids{UNK}));  // over max_chars_per_word
  // the limit counts code points, not bytes: 60 two-byte characters are 60
  std::string accented;
  for (int i = 0; i < 60; ++i) accented += "\u00e1";  // á → a
  EXPECT_EQ(wp.tokenize(accented).size(), 60u);
}

TEST(WordPiece, CjkIdeographsAreWords) {
  const WordPiece wp = vocab();
  EXPECT_EQ(wp.tokenize("中中hello中"), (Ids{ZH, ZH, HELLO, ZH}));
  EXPECT_EQ(wp.tokenize("中文"), (Ids{ZH, UNK}));
  attn::text::WordPieceOptions no_split;
  no_split.split_cjk = false;
  EXPECT_EQ(WordPiece(kVocab, "test vocab", no_split).tokenize("中中"), (Ids{UNK}));
}

TEST(WordPiece, SpecialTokensInTextStayWhole) {
  const WordPiece wp = vocab();
  EXPECT_EQ(wp.tokenize("hello[SEP]world [MASK][PAD]"), (Ids{HELLO, SEP, WORLD, MASK, PAD}));
  EXPECT_EQ(wp.tokenize("[sep]"), (Ids{22, 24, 23}));  // case matters: "[", "sep", "]"
  EXPECT_EQ(wp.tokenize("[SEP"), (Ids{22, 24}));       // incomplete: "[", then "SEP" lower-cased
  EXPECT_EQ(wp.pre_tokenize("Hi[CLS]x, y"), (std::vector<std::string>{"hi", "[CLS]", "x", ",", "y"}));
}

TEST(WordPiece, TruncatesToMaxLength) {
  const WordPiece wp = vocab();
  EXPECT_EQ(wp.encode("hello world hello", 4), (Ids{CLS, HELLO, WORLD, SEP}));
  EXPECT_EQ(wp.encode("hello world hello", 2), (Ids{CLS, SEP}));
  EXPECT_EQ(wp.encode("hello", 3), (Ids{CLS, HELLO, SEP}));
  EXPECT_NE(error_of([&] { wp.encode("hello", 1); }).find("max_length: = 1, expected >= 2"), std::string::npos);
}

TEST(WordPiece, BatchPadsAndMasks) {
  const WordPiece wp = vocab();
  const auto e = wp.encode_batch({"hello world", "", "unaffable hello world"}, 5);
  ASSERT_EQ(e.B, 3);
  ASSERT_EQ(e.N, 5);
  EXPECT_EQ(e.ids, (Ids{CLS, HELLO, WORLD, SEP, PAD, CLS, SEP, PAD, PAD, PAD, CLS, UN, AFF, ABLE, SEP}));
  EXPECT_EQ(e.attention_mask, (Ids{1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(e.lengths, (std::vector<std::int64_t>{4, 2, 5}));
  const auto empty = wp.encode_batch({}, 8);
  EXPECT_EQ(empty.B, 0);
  EXPECT_EQ(empty.N, 0);
}

TEST(WordPiece, InvalidUtf8IsAnError) {
  const WordPiece wp = vocab();
  EXPECT_EQ(error_of([&] { wp.encode("ab\xff", 8); }), "text: invalid UTF-8 at byte 2 (expected UTF-8 text)");
  EXPECT_EQ(error_of([&] {
              wp.encode_batch({"ok", "x\xed\xa0\x80"}, 8);
            }),  // an encoded surrogate
            "texts[1]: invalid UTF-8 at byte 1 (expected UTF-8 text)");
}

TEST(WordPiece, ReadsVocabFiles) {
  const auto path = write_file("crlf.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello \r\nworld");
  const WordPiece wp(path.string());
  EXPECT_EQ(wp.vocab_size(), 6);
  EXPECT_EQ(wp.encode("Hello world", 16), (Ids{2, 4, 5, 3}));
  EXPECT_EQ(wp.id_to_token(5), "world");
  EXPECT_EQ(wp.token_to_id("[MASK]"), -1);
  EXPECT_EQ(wp.tokenize("[MASK]"), (Ids{1, 1, 1}));  // not in this vocab, so not special: "[", "mask", "]"
  EXPECT_NE(error_of([&] { wp.id_to_token(6); }).find("id: = 6, expected in [0, 6)"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(WordPiece, BadVocabFilesNameTheFileAndTheProblem) {
  const std::string missing = (std::filesystem::temp_directory_path() / "attn_wordpiece_no_such_vocab.txt").string();
  EXPECT_NE(error_of([&] { WordPiece wp(missing); }).find(missing + ": cannot open the vocab file"), std::string::npos);
  const auto empty = write_file("empty.txt", "");
  EXPECT_EQ(error_of([&] { WordPiece wp(empty.string()); }),
            empty.string() + ": the vocab is empty; expected one token per line");
  const auto partial = write_file("partial.txt", "[CLS]\n[SEP]\nhello\n");
  EXPECT_EQ(error_of([&] { WordPiece wp(partial.string()); }),
            partial.string() +
                ": the vocab (3 tokens) has no [UNK], [PAD], expected each of [UNK], [CLS], [SEP], [PAD] on a line "
                "of its own (a BERT vocab needs them)");
  std::filesystem::remove(empty);
  std::filesystem::remove(partial);
}

}  // namespace
