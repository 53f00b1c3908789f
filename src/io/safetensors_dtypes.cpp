// The safetensors dtype names, their sizes and attn's dtypes among them.

#include "io/safetensors_dtypes.hpp"

#include <array>
#include <utility>

#include "attn/io/safetensors.hpp"

namespace attn::io {

namespace {
constexpr std::array<std::pair<std::string_view, std::uint64_t>, 17> kSizes{{
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2},
    {"I32", 4}, {"U32", 4}, {"F32", 4},
    {"C64", 8}, {"F64", 8}, {"I64", 8}, {"U64", 8},
}};
constexpr std::array<std::pair<std::string_view, DType>, 8> kAttn{{
    {"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16}, {"F16", DType::f16},
    {"I8", DType::i8}, {"I32", DType::i32}, {"I64", DType::i64}, {"BOOL", DType::boolean},
}};
}  // namespace

std::optional<std::uint64_t> safetensors_dtype_bytes(std::string_view name) {
  for (const auto& [n, size] : kSizes)
    if (n == name) return size;
  return std::nullopt;
}

std::optional<DType> attn_dtype_of(std::string_view name) {
  for (const auto& [n, dtype] : kAttn)
    if (n == name) return dtype;
  return std::nullopt;
}

const char* safetensors_dtype_name(DType dtype) {
  for (const auto& [n, d] : kAttn)
    if (d == dtype) return n.data();
  return "?";
}

}  // namespace attn::io
