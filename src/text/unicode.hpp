#pragma once
// The Unicode character classes and transforms of BERT's basic tokenizer (docs/text.md), from ICU.
// General categories are those of Unicode 8.0 and NFD that of Unicode 9.0 — the tables inside the
// Hugging Face `tokenizers` library, whose output we match — taken from ICU's data limited to the
// characters assigned by then, plus six characters whose category changed after 8.0 (unicode.cpp).
// Whitespace and lower-casing follow ICU's own Unicode version, as `tokenizers` uses Rust's current
// tables for those.

#include <string>
#include <string_view>

namespace attn::text::unicode {

/// Code points of UTF-8 `s`; attn::Error(`argument`, "invalid UTF-8 at byte N") on malformed input.
std::u32string decode_utf8(std::string_view s, const std::string& argument);
/// Appends the UTF-8 encoding of `c` to `out`.
void append_utf8(char32_t c, std::string& out);

/// White_Space, tab, LF, CR: become a space, and separate words.
bool is_whitespace(char32_t c);
/// Removed by cleaning: U+0000, U+FFFD, and Cc, Cf, Co, Cs (Unicode 8.0) except tab, LF, CR.
bool is_control(char32_t c);
/// A word of its own: ASCII !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~ and general category P* (Unicode 8.0).
bool is_punctuation(char32_t c);
/// CJK ideographs, the blocks `tokenizers` pads with spaces.
bool is_cjk(char32_t c);

/// NFD (Unicode 9.0 decompositions and combining classes), then drop nonspacing marks (Mn, 8.0).
std::u32string strip_accents(const std::u32string& s);
/// Lower-cases each code point on its own (full mapping, no context: Σ always becomes σ).
std::u32string lowercase(const std::u32string& s);

}  // namespace attn::text::unicode
