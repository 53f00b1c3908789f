#pragma once
// The tile-operation interface of the AMX kernels (docs/amx.md) and its scalar emulation.
//
// A tile is 16 rows × 64 bytes. The kernels use one fixed configuration (palette 1, every tile
// 16 × 64): tiles 0–3 hold fp32 accumulators C (16 × 16), 4–5 the A operands (16 rows × 32 bf16)
// and 6–7 the B operands in the pair-interleaved (VNNI-2) layout: B row k holds 16 pairs
// (B[2k][n], B[2k+1][n]). tdpbf16ps computes, for every m and n,
//   C[m][n] += Σ_k A[m][2k]·B[k][2n] + A[m][2k+1]·B[k][2n+1]   (fp32 accumulation).
// A tile-operation class T provides, with tile numbers as template arguments (the hardware
// instructions encode them):
//   T::begin() / T::end()          load the configuration / release the tile state (per task)
//   T::zero<t>()                   t = 0
//   T::load<t>(p, stride)          16 rows of 64 bytes from p, rows `stride` bytes apart
//   T::store<t>(p, stride)         the reverse
//   T::dot<c, a, b>()              tdpbf16ps
// EmuTiles below runs the same operations on plain memory, so the packing, indexing and masking
// of the tile kernels are tested on every machine; HwTiles (tiles_hw.hpp) runs the instructions.

#include <cstdint>
#include <cstring>

#include "core/half.hpp"

namespace attn::cpu::amx {

inline constexpr int kTileRows = 16;
inline constexpr int kTileBytes = 64;

/// The 64-byte operand of ldtilecfg (Intel SDM, "TILECFG").
struct TileConfig {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};

  /// Every one of the 8 tiles 16 rows × 64 bytes.
  static TileConfig full() {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = kTileBytes;
      c.rows[t] = kTileRows;
    }
    return c;
  }
};
static_assert(sizeof(TileConfig) == 64);

/// Scalar emulation: 8 tiles of one thread in plain memory, with the semantics above.
struct EmuTiles {
  struct State {
    alignas(64) unsigned char t[8][kTileRows][kTileBytes];
  };
  static State& state() {
    thread_local State s;
    return s;
  }
  static void begin() { std::memset(&state(), 0, sizeof(State)); }
  static void end() {}
  template <int T>
  static void zero() {
    std::memset(state().t[T], 0, sizeof state().t[T]);
  }
  template <int T>
  static void load(const void* p, std::int64_t stride) {
    for (int r = 0; r < kTileRows; ++r) std::memcpy(state().t[T][r], static_cast<const char*>(p) + r * stride, kTileBytes);
  }
  template <int T>
  static void store(void* p, std::int64_t stride) {
    for (int r = 0; r < kTileRows; ++r) std::memcpy(static_cast<char*>(p) + r * stride, state().t[T][r], kTileBytes);
  }
  template <int C, int A, int B>
  static void dot() {
    State& s = state();
    for (int m = 0; m < kTileRows; ++m)
      for (int n = 0; n < kTileRows; ++n) {
        float c;
        std::memcpy(&c, &s.t[C][m][4 * n], 4);
        for (int k = 0; k < kTileRows; ++k)
          for (int e = 0; e < 2; ++e) {  // the two products of a pair, in order (Intel SDM, TDPBF16PS)
            std::uint16_t a, b;
            std::memcpy(&a, &s.t[A][m][4 * k + 2 * e], 2);
            std::memcpy(&b, &s.t[B][k][4 * n + 2 * e], 2);
            c += core::bf16_to_f32(a) * core::bf16_to_f32(b);
          }
        std::memcpy(&s.t[C][m][4 * n], &c, 4);
      }
  }
};

}  // namespace attn::cpu::amx
