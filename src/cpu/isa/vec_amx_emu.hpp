#pragma once
// The AMX kernels on the scalar tile emulation (amx/tiles.hpp) and scalar vector ops, so the
// tile path's packing, indexing and masking run and are tested on every machine. Every bf16
// problem takes the tile path here (no minimum row count).

#include <cstdint>
#include <cstring>

#include "core/half.hpp"
#include "cpu/amx/exp2.hpp"
#include "cpu/amx/tiles.hpp"
#include "cpu/isa/vec_scalar.hpp"

namespace attn::cpu::isa {

struct AmxEmu : Scalar {
  using Tiles = amx::EmuTiles;
  static constexpr const char* kName = "amx_emu";
  static constexpr std::int64_t kTileMinRows = 1;
  static float exp2(float t) { return amx::exp2_poly(t); }  // the tile path's softmax (amx/exp2.hpp)

  using PairVec = std::uint32_t;  // one (lo, hi) bf16 pair, lo in the low half
  static PairVec pairs_f32(float lo, float hi) {
    return static_cast<std::uint32_t>(core::f32_to_bf16(lo)) | static_cast<std::uint32_t>(core::f32_to_bf16(hi)) << 16;
  }
  static void store_pairs(std::uint16_t* p, PairVec v) { std::memcpy(p, &v, sizeof v); }
};

}  // namespace attn::cpu::isa
