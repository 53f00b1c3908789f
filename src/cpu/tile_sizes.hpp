#pragma once
// Tile sizes of the cpu forward: rows per task (G·Br, all heads of a kv group) and keys per tile
// (Bc). Starting points: L2-resident tiles: Q, K, V, S, O ≈ 100–150 KiB;
// entries are re-measured with `attn bench` and name the CPU they were measured on.

#include <algorithm>
#include <cstdint>

namespace attn::cpu {

struct TileSizes {
  std::int64_t Br;  // query positions per task
  std::int64_t Bc;  // keys per tile
};

// Measured on AMD EPYC (Zen 3, family 25 model 1, AVX2), 2026-11-24, B=1 H=16 N=1024, fp32,
// 1 thread, medians of 7 (`ATTN_TILES=Br,Bc` overrides the table for such sweeps), GFLOP/s:
//   Br x Bc     64x64  64x128  32x128  128x64  128x128  64x256  32x64
//   D=64         70.0    69.2    69.7    67.5     67.9    70.3   67.5
//   D=128        75.9    75.2    73.6    70.0     68.3    73.7   72.7
// Non-causal throughput is flat within noise around Br = 64; larger Br loses at D=128 (the
// Qᵀ/O/S tiles leave L2). Causal N=2048, 2 threads: D=64 64x128 92 vs 64x64 79; D=128 64x64 116
// vs 64x128 113 (noisy: another build was running).
// The AMX tile path (bf16 on `amx`, docs/amx.md) takes Bc = 128 at every D: the Oᵀ accumulator
// tiles are loaded and stored once per key tile, so longer key tiles amortise them. Intel Xeon
// (Emerald Rapids, KVM), 2026-12-01, B=1 H=16 N=2048 D=128, bf16, 2 threads, medians of 7 of
// sdpa_forward on a loaded machine, the tile path before its fused softmax: 64×64 402 GFLOP/s,
// 64×128 461, 64×256 431, 32×256 425, 128×128 432 (a second run: 381, 444, 421, 409, 442);
// D=64 64×128 vs 64×256: 353 vs 350. With the fused softmax, 64×128 vs 64×256 at D=128: 504 vs
// 414 and 501 vs 500 (two runs).
inline TileSizes forward_tile_sizes(std::int64_t D, std::int64_t G, bool amx_tiles = false) {
  // Rows per task ≈ 64: Br = 64 / G query positions (at least 4), so that G heads share every
  // K/V tile while the task's Qᵀ, O and Sᵀ tiles stay in L2.
  const std::int64_t rows = 64;
  const std::int64_t Br = std::max<std::int64_t>(4, rows / std::max<std::int64_t>(G, 1));
  const std::int64_t Bc = D <= 64 || amx_tiles ? 128 : 64;
  return {Br, Bc};
}

// Backward tiles (Br query positions × Bc keys per KV block). Measured on AMD EPYC (Zen 3), 2026-11-24,
// B=1 H=16, fp32, 2 threads, medians of 3–4 interleaved runs on a noisy machine, GFLOP/s:
//   64×64 vs 64×128:  D=128 N=1024 115 vs 98;  D=128 N=2048 causal 112 vs 99;
//                     D=128 N=4096 94 vs 112;  D=128 N=4096 causal 86 vs 99;  D=64 N=4096 103 vs 109.
// 96×96, 128×64, 32×64, 32×32 and 64×32 at N=2048 were within noise of 64×64 or below it. Past ~4k
// keys the Q, dO and dQ rows that every KV block streams no longer stay in cache, and a wider
// block halves that traffic per flop.
inline TileSizes backward_tile_sizes(std::int64_t max_keys) { return {64, max_keys >= 4096 ? 128 : 64}; }

}  // namespace attn::cpu
