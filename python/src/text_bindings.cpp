// attn._core.WordPiece: the BERT WordPiece tokenizer of include/attn/text/wordpiece.hpp for Python
// (docs/text.md). encode() returns numpy int32 arrays ids and attention_mask, [B, N].

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/text/wordpiece.hpp"
#include "convert.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {
namespace {

using text::WordPiece;
using IdArray = nb::ndarray<nb::numpy, std::int32_t, nb::ndim<2>>;

IdArray to_numpy(std::vector<std::int32_t>&& v, std::int64_t B, std::int64_t N) {
  auto* owned = new std::vector<std::int32_t>(std::move(v));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<std::int32_t>*>(p); });
  return IdArray(owned->data(), {static_cast<std::size_t>(B), static_cast<std::size_t>(N)}, owner);
}

}  // namespace

std::vector<std::string> texts_from(nb::handle texts) {
  if (nb::isinstance<nb::str>(texts) || !(nb::isinstance<nb::list>(texts) || nb::isinstance<nb::tuple>(texts))) {
    throw Error(ErrorKind::type, "texts", detail::concat("got ", nb::inst_name(texts).c_str(), ", expected a list of str"));
  }
  std::vector<std::string> out;
  out.reserve(nb::len(texts));
  std::size_t i = 0;
  for (nb::handle t : texts) {
    if (!nb::isinstance<nb::str>(t)) {
      throw Error(ErrorKind::type, detail::concat("texts[", i, "]"), detail::concat("got ", nb::inst_name(t).c_str(), ", expected str"));
    }
    out.emplace_back(nb::cast<std::string>(t));
    ++i;
  }
  return out;
}

void register_text(nb::module_& m) {
  nb::class_<WordPiece>(m, "WordPiece",
                        "BERT's WordPiece tokenizer reading a vocab.txt; ids equal those of the Hugging Face\n"
                        "`tokenizers` BERT pipeline (BertNormalizer, BertPreTokenizer, WordPiece). docs/text.md.")
      .def(
          "__init__",
          [](WordPiece* self, const std::string& vocab_path, bool lowercase, std::optional<bool> strip_accents,
             bool split_cjk, std::int64_t max_chars_per_word) {
            text::WordPieceOptions o;
            o.lowercase = lowercase;
            o.strip_accents = strip_accents.value_or(lowercase);
            o.split_cjk = split_cjk;
            o.max_chars_per_word = max_chars_per_word;
            new (self) WordPiece(vocab_path, o);
          },
          "vocab_path"_a, nb::kw_only(), "lowercase"_a = true, "strip_accents"_a = nb::none(), "split_cjk"_a = true,
          "max_chars_per_word"_a = 100,
          "WordPiece(vocab_path, *, lowercase=True, strip_accents=None (= lowercase), split_cjk=True,\n"
          "max_chars_per_word=100). ValueError naming the file when it is missing, empty or lacks\n"
          "[UNK], [CLS], [SEP] or [PAD].")
      .def(
          "encode",
          [](const WordPiece& wp, nb::handle texts, std::int64_t max_length) {
            const std::vector<std::string> t = texts_from(texts);
            text::Encoding e;
            {
              nb::gil_scoped_release release;
              e = wp.encode_batch(t, max_length);
            }
            return nb::make_tuple(to_numpy(std::move(e.ids), e.B, e.N),
                                  to_numpy(std::move(e.attention_mask), e.B, e.N));
          },
          "texts"_a, "max_length"_a = 256,
          "encode(texts, max_length=256) -> (ids, attention_mask): int32 arrays [len(texts), N],\n"
          "each row [CLS] pieces... [SEP] truncated to max_length, padded with [PAD] to the longest row;\n"
          "attention_mask is 1 on tokens, 0 on padding.")
      .def(
          "tokenize", [](const WordPiece& wp, const std::string& text) { return wp.tokenize(text); }, "text"_a,
          "tokenize(text) -> list[int]: the WordPiece ids of text, without [CLS]/[SEP] and untruncated.")
      .def(
          "pre_tokenize", [](const WordPiece& wp, const std::string& text) { return wp.pre_tokenize(text); }, "text"_a,
          "pre_tokenize(text) -> list[str]: the normalised words WordPiece splits (special tokens as written).")
      .def("token_to_id", &WordPiece::token_to_id, "token"_a, "The id of token, or -1.")
      .def("id_to_token", &WordPiece::id_to_token, "id"_a, "The token of id (its vocab.txt line).")
      .def_prop_ro("vocab_size", &WordPiece::vocab_size)
      .def_prop_ro("unk_id", &WordPiece::unk_id)
      .def_prop_ro("cls_id", &WordPiece::cls_id)
      .def_prop_ro("sep_id", &WordPiece::sep_id)
      .def_prop_ro("pad_id", &WordPiece::pad_id);
}

}  // namespace attn::py
