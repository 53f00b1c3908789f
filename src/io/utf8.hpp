#pragma once
// UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).

#include <cstddef>
#include <optional>
#include <string_view>

namespace attn::io {

/// The index of the first byte that does not start or continue a valid UTF-8 sequence, or nullopt
/// when `s` is valid UTF-8.
std::optional<std::size_t> first_invalid_utf8(std::string_view s);

}  // namespace attn::io
