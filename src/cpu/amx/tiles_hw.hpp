#pragma once
// The tile operations of tiles.hpp on the AMX instructions (AMX-TILE, AMX-BF16). Only included
// inside a target region that enables amx-tile and amx-bf16 (isa/amx.cpp); a thread must have
// the tile permission (isa::has_amx_bf16, isa/cpu_features.hpp) before begin(). GCC's _tile_* macros paste the tile number
// into the instruction text, so each number is spelled out once (ATTN_TILE_CASES).

#include <immintrin.h>

#include <cstdint>

#include "cpu/amx/tiles.hpp"

namespace attn::cpu::amx {

#define ATTN_TILE_CASES(OP) \
  if constexpr (T == 0) OP(0); \
  else if constexpr (T == 1) OP(1); \
  else if constexpr (T == 2) OP(2); \
  else if constexpr (T == 3) OP(3); \
  else if constexpr (T == 4) OP(4); \
  else if constexpr (T == 5) OP(5); \
  else if constexpr (T == 6) OP(6); \
  else OP(7)

struct HwTiles {
  static void begin() {
    static const TileConfig cfg = TileConfig::full();
    _tile_loadconfig(&cfg);
  }
  static void end() { _tile_release(); }
  template <int T>
  static void zero() {
#define ATTN_OP(t) _tile_zero(t)
    ATTN_TILE_CASES(ATTN_OP);
#undef ATTN_OP
  }
  template <int T>
  static void load(const void* p, std::int64_t stride) {
#define ATTN_OP(t) _tile_loadd(t, p, stride)
    ATTN_TILE_CASES(ATTN_OP);
#undef ATTN_OP
  }
  template <int T>
  static void store(void* p, std::int64_t stride) {
#define ATTN_OP(t) _tile_stored(t, p, stride)
    ATTN_TILE_CASES(ATTN_OP);
#undef ATTN_OP
  }
  /// The four products of fwd_tiles.hpp's 2 × 2 blocking.
  template <int C, int A, int B>
  static void dot() {
    static_assert((C == 0 && A == 4 && B == 6) || (C == 1 && A == 4 && B == 7) || (C == 2 && A == 5 && B == 6) ||
                  (C == 3 && A == 5 && B == 7));
    if constexpr (C == 0) _tile_dpbf16ps(0, 4, 6);
    else if constexpr (C == 1) _tile_dpbf16ps(1, 4, 7);
    else if constexpr (C == 2) _tile_dpbf16ps(2, 5, 6);
    else _tile_dpbf16ps(3, 5, 7);
  }
};

#undef ATTN_TILE_CASES

}  // namespace attn::cpu::amx
