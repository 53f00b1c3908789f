#pragma once
// AMX traits: the AVX-512 + AVX512_BF16 vector ops (softmax, P rounded to bf16 pairs) with the
// AMX tile operations for the two products of the bf16 forward (amx/fwd_tiles.hpp). The fp32 and
// fp16 paths and the backward are the AVX-512 ones; bf16 inputs never take the vdpbf16ps pair dot
// here (slower than fp32 on Intel, isa_select.cpp).

#include "cpu/amx/tiles_hw.hpp"
#include "cpu/isa/vec_avx512bf16.hpp"

namespace attn::cpu::isa {

struct Amx : Avx512Bf16 {
  using Tiles = amx::HwTiles;
  static constexpr const char* kName = "amx";
  static constexpr std::int64_t kTileMinRows = 16;
};

}  // namespace attn::cpu::isa
