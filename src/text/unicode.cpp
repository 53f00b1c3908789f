// Character classes and transforms of BERT's basic tokenizer, answered by ICU (docs/text.md).
//
// `tokenizers` (the Rust library behind Hugging Face's fast BERT tokenizer) takes general
// categories (control, punctuation, nonspacing mark) from a crate with Unicode 8.0 data, NFD from
// one with Unicode 9.0 data, and whitespace and lower-casing from Rust's std (current Unicode). To
// give the same answers we intersect ICU's categories with [:age=8.0:] (a character assigned later
// has no category there, so it is neither removed, split nor stripped), patch the six characters
// assigned by 8.0 whose category changed later (kChanged below), and filter ICU's NFD to
// [:age=9.0:] (later characters are neither decomposed nor reordered). A test over every code
// point (python/tests/test_text.py) holds this equal to `tokenizers`.

#include "text/unicode.hpp"

#include <unicode/normalizer2.h>
#include <unicode/uniset.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>
#include <unicode/utf8.h>

#include <cstdint>
#include <memory>

#include "attn/error.hpp"

namespace attn::text::unicode {
namespace {

// Characters assigned by Unicode 8.0 whose general category changed in a later version: the
// category `tokenizers` sees (8.0) differs from ICU's. 8.0 → now: U+1734 Mn → Mc, U+1885 and
// U+1886 Lo → Mn, U+A9BD Mc → Mn, U+111C9 Po → Mn, U+166D Po → So.
struct Changed {
  char32_t c;
  bool mn_in_8;
  bool punct_in_8;
};
constexpr Changed kChanged[] = {{0x1734, true, false},  {0x1885, false, false}, {0x1886, false, false},
                                {0xA9BD, false, false}, {0x111C9, false, true}, {0x166D, false, true}};

icu::UnicodeSet make_set(const char* pattern) {
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeSet set(icu::UnicodeString(pattern, -1, US_INV), status);
  if (U_FAILURE(status)) {
    throw Error(ErrorKind::system, "ICU", detail::concat("cannot build the character set ", pattern, ": ", u_errorName(status), ", expected U_ZERO_ERROR"));
  }
  return set;
}

struct Tables {
  icu::UnicodeSet nfd_chars = make_set("[:age=9.0:]");
  icu::UnicodeSet whitespace = make_set("[[:White_Space:]\\t\\n\\r]");
  icu::UnicodeSet control = make_set("[[[:Cc:][:Cf:][:Co:][:Cs:]]&[:age=8.0:]]");
  icu::UnicodeSet punct = make_set("[[[:P:]&[:age=8.0:]][!-/:-@\\[-`\\{-~]]");
  icu::UnicodeSet mn = make_set("[[:Mn:]&[:age=8.0:]]");
  // The CJK blocks of `tokenizers` (BertNormalizer): BERT's list, with 0x2B920 where BERT has 0x2B820.
  icu::UnicodeSet cjk = make_set(
      "[\\u4E00-\\u9FFF\\u3400-\\u4DBF\\U00020000-\\U0002A6DF\\U0002A700-\\U0002B73F\\U0002B740-\\U0002B81F"
      "\\U0002B920-\\U0002CEAF\\uF900-\\uFAFF\\U0002F800-\\U0002FA1F]");
  std::unique_ptr<icu::FilteredNormalizer2> nfd;

  Tables() {
    control.remove(U'\t').remove(U'\n').remove(U'\r').add(0).add(0xFFFD);
    for (const Changed& ch : kChanged) {
      if (ch.mn_in_8)
        mn.add(ch.c);
      else
        mn.remove(ch.c);
      if (ch.punct_in_8)
        punct.add(ch.c);
      else
        punct.remove(ch.c);
    }
    for (icu::UnicodeSet* s : {&nfd_chars, &whitespace, &control, &punct, &mn, &cjk}) s->freeze();
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* base = icu::Normalizer2::getNFDInstance(status);
    if (U_FAILURE(status)) throw Error(ErrorKind::system, "ICU", detail::concat("has no NFD normaliser (", u_errorName(status), "), expected one"));
    nfd = std::make_unique<icu::FilteredNormalizer2>(*base, nfd_chars);
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

bool all_ascii(const std::u32string& s) {
  for (char32_t c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

}  // namespace

std::u32string decode_utf8(std::string_view s, const std::string& argument) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  const auto n = static_cast<std::int32_t>(s.size());
  ATTN_CHECK(s.size() <= static_cast<std::size_t>(INT32_MAX), value, argument, "text of ", s.size(),
             " bytes, expected under 2 GiB");
  for (std::int32_t i = 0; i < n;) {
    const std::int32_t at = i;
    UChar32 c;
    U8_NEXT(p, i, n, c);
    ATTN_CHECK(c >= 0, value, argument, "invalid UTF-8 at byte ", at, " (expected UTF-8 text)");
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
    return;
  }
  std::uint8_t buf[U8_MAX_LENGTH];
  std::int32_t len = 0;
  U8_APPEND_UNSAFE(buf, len, static_cast<UChar32>(c));
  out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(len));
}

bool is_whitespace(char32_t c) { return tables().whitespace.contains(static_cast<UChar32>(c)); }
bool is_control(char32_t c) { return tables().control.contains(static_cast<UChar32>(c)); }
bool is_punctuation(char32_t c) { return tables().punct.contains(static_cast<UChar32>(c)); }
bool is_cjk(char32_t c) { return tables().cjk.contains(static_cast<UChar32>(c)); }

std::u32string strip_accents(const std::u32string& s) {
  if (all_ascii(s)) return s;  // ASCII has no decompositions and no marks
  const Tables& t = tables();
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString in =
      icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(s.data()), static_cast<std::int32_t>(s.size()));
  icu::UnicodeString d;
  t.nfd->normalize(in, d, status);
  if (U_FAILURE(status)) throw Error(ErrorKind::system, "ICU", detail::concat("NFD failed: ", u_errorName(status), ", expected U_ZERO_ERROR"));
  std::u32string out;
  out.reserve(static_cast<std::size_t>(d.length()));
  for (std::int32_t i = 0; i < d.length();) {
    const UChar32 c = d.char32At(i);
    i += U16_LENGTH(c);
    if (!t.mn.contains(c)) out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

std::u32string lowercase(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out.push_back(c >= U'A' && c <= U'Z' ? c + (U'a' - U'A') : c);
      continue;
    }
    // One code point at a time: the full mapping (U+0130 → i + U+0307) without the context rules.
    UChar src[2];
    std::int32_t src_len = 0;
    U16_APPEND_UNSAFE(src, src_len, static_cast<UChar32>(c));
    UChar dst[8];
    UErrorCode status = U_ZERO_ERROR;
    const std::int32_t len = u_strToLower(dst, 8, src, src_len, "", &status);
    if (U_FAILURE(status)) throw Error(ErrorKind::system, "ICU", detail::concat("lower-casing U+", std::hex, std::uint32_t(c), " failed, expected it to succeed"));
    for (std::int32_t i = 0; i < len;) {
      UChar32 l;
      U16_NEXT(dst, i, len, l);
      out.push_back(static_cast<char32_t>(l));
    }
  }
  return out;
}

}  // namespace attn::text::unicode
