#pragma once
// Rounding fp32 rows to bf16 (round to nearest even, NaN kept a quiet NaN: core::f32_to_bf16's
// result, bit for bit) for the bf16 GEMMs of the nn modules (nn/gemm_bf16.hpp). The loop is plain
// integer arithmetic without branches, so the compiler vectorises it for the ISA of the file that
// instantiates it (round_bf16_<isa>.cpp, each in its target region as src/cpu/isa does); every ISA
// gives the same bits. Rows are split across threads when there is enough work.

#include <omp.h>

#include <bit>
#include <cstdint>

namespace attn::nn::detail {

template <class Isa>
struct RoundBf16 {
  static void rows(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld_src, std::uint16_t* dst,
                   std::int64_t ld_dst) {
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* s = src + i * ld_src;
      std::uint16_t* d = dst + i * ld_dst;
      for (std::int64_t j = 0; j < cols; ++j) {
        const std::uint32_t bits = std::bit_cast<std::uint32_t>(s[j]);
        const std::uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
        const std::uint32_t nan = (bits >> 16) | 0x0040u;  // quiet NaN, as core::f32_to_bf16
        d[j] = static_cast<std::uint16_t>((bits & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
      }
    }
  }
};

using RoundRowsFn = void (*)(const float*, std::int64_t, std::int64_t, std::int64_t, std::uint16_t*, std::int64_t);

}  // namespace attn::nn::detail
