#pragma once
// The safetensors dtype table: every dtype name of the format with a whole-byte element size
// (the sub-byte F4/F6 types are refused as unknown), and which of them attn has.

#include <cstdint>
#include <optional>
#include <string_view>

#include "attn/tensor.hpp"

namespace attn::io {

inline constexpr const char* kKnownSafetensorsDtypes =
    "BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64";

/// Bytes per element of a safetensors dtype name, nullopt when the name is unknown.
std::optional<std::uint64_t> safetensors_dtype_bytes(std::string_view name);

}  // namespace attn::io
