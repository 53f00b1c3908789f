#pragma once
// Tile sizes of the cpu forward: rows per task (G·Br, all heads of a kv group) and keys per tile
// (Bc). Starting points from KERNELS.md §8.2 (L2-resident tiles: Q, K, V, S, O ≈ 100–150 KiB);
// entries are re-measured with `attn bench` and name the CPU they were measured on.

#include <algorithm>
#include <cstdint>

namespace attn::cpu {

struct TileSizes {
  std::int64_t Br;  // query positions per task
  std::int64_t Bc;  // keys per tile
};

inline TileSizes forward_tile_sizes(std::int64_t D, std::int64_t G) {
  // Rows per task ≈ 64: Br = 64 / G query positions (at least 4), so that a task's Q, O and S
  // tiles stay in L2 while G heads share every packed K/V tile.
  const std::int64_t rows = 64;
  const std::int64_t Br = std::max<std::int64_t>(4, rows / std::max<std::int64_t>(G, 1));
  const std::int64_t Bc = D <= 64 ? 128 : 64;
  return {Br, Bc};
}

}  // namespace attn::cpu
