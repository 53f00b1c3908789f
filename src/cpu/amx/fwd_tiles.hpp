#pragma once
// The two tile products of the cpu forward for bf16 inputs (docs/amx.md), on a tile-operation
// class T (tiles.hpp: the AMX instructions or their emulation). The kernel keeps S transposed
// (query rows in vector lanes, sdpa_fwd_kernel.hpp), so both products are oriented to need no
// transposition inside the key loop:
//   Sᵀ = K·Qᵀ:  A = K rows as they are (packed once per call, fwd_pack.hpp), B = Qᵀ in pairs
//               along the head dim ([Dp/2][rows_p][2], packed once per task);
//   Oᵀ += Vᵀ·Pᵀ: A = Vᵀ (packed once per call), B = Pᵀ in pairs along keys ([bcp/2][rows_p][2],
//               P rounded to bf16 once per tile), C = the fp32 accumulator Oᵀ [dvp][rows_p].
// Each step computes a 32 × 32 fp32 block in the four accumulator tiles 0–3 from two A tiles
// (4, 5) and two B tiles (6, 7), 32 bf16 of the reduction per step: 4 tdpbf16ps per 4 loads.
// How others use AMX for attention, read for the layout (no code taken): oneDNN's brgemm as used by
// PyTorch's CPU flash attention (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp, VNNI-2 packed
// K/V), OpenVINO's CPU SDPA (src/plugins/intel_cpu, brgemm with AMX), vLLM's CPU attention
// (csrc/cpu, query heads of a kv group in the tile rows).

#include <cstdint>

#include "cpu/amx/tiles.hpp"

namespace attn::cpu::amx {

template <class T>
struct FwdTiles {
  /// Sᵀ[c][r] = Σ_d K[c][d]·Q[r][d] for c in [0, round_up(bc, 32)), r in [0, rows_p) (rows_p a
  /// multiple of 32). k: K rows of Dp elements (Dp a multiple of 32); q2: Qᵀ pairs; st: rows of
  /// rows_p floats.
  static void qk(const std::uint16_t* k, std::int64_t Dp, const std::uint16_t* q2, std::int64_t rows_p, std::int64_t bc,
                 float* st) {
    const std::int64_t lda = Dp * 2, ldb = rows_p * 4, ldc = rows_p * 4;
    for (std::int64_t c0 = 0; c0 < bc; c0 += 32) {
      const std::uint16_t* a = k + c0 * Dp;
      for (std::int64_t r0 = 0; r0 < rows_p; r0 += 32) {
        T::template zero<0>();
        T::template zero<1>();
        T::template zero<2>();
        T::template zero<3>();
        for (std::int64_t d0 = 0; d0 < Dp; d0 += 32) {
          const std::uint16_t* b = q2 + (d0 / 2 * rows_p + r0) * 2;
          if (r0 == 0)  // the next 32 K rows into L1 while these run: 32 of their Dp lines per step
            for (int l = 0; l < 32; ++l) __builtin_prefetch(a + 32 * Dp + (d0 / 32 * 32 + l) * 32);
          T::template load<4>(a + d0, lda);
          T::template load<5>(a + 16 * Dp + d0, lda);
          T::template load<6>(b, ldb);
          T::template load<7>(b + 32, ldb);
          T::template dot<0, 4, 6>();
          T::template dot<1, 4, 7>();
          T::template dot<2, 5, 6>();
          T::template dot<3, 5, 7>();
        }
        float* c = st + c0 * rows_p + r0;
        T::template store<0>(c, ldc);
        T::template store<1>(c + 16, ldc);
        T::template store<2>(c + 16 * rows_p, ldc);
        T::template store<3>(c + 16 * rows_p + 16, ldc);
      }
    }
  }

  /// Oᵀ[d][r] += Σ_c Vᵀ[d][c]·P[r][c] for d in [0, dvp) (a multiple of 16), r in [0, rows_p), c in
  /// [0, bcp) (a multiple of 32). vt: Vᵀ rows, ldv elements apart, at the tile's first key; p2: Pᵀ
  /// pairs; ot: Oᵀ rows of rows_p floats.
  static void pv(const std::uint16_t* vt, std::int64_t ldv, const std::uint16_t* p2, std::int64_t rows_p, std::int64_t bcp,
                 std::int64_t dvp, float* ot) {
    for (std::int64_t d0 = 0; d0 < dvp; d0 += 32) {
      if (d0 + 32 <= dvp) pv_block<true>(vt + d0 * ldv, ldv, p2, rows_p, bcp, ot + d0 * rows_p);
      else pv_block<false>(vt + d0 * ldv, ldv, p2, rows_p, bcp, ot + d0 * rows_p);
    }
  }

 private:
  // 32 (kTwo) or 16 rows of Oᵀ × every query row.
  template <bool kTwo>
  static void pv_block(const std::uint16_t* vt, std::int64_t ldv, const std::uint16_t* p2, std::int64_t rows_p,
                       std::int64_t bcp, float* ot) {
    const std::int64_t lda = ldv * 2, ldb = rows_p * 4, ldc = rows_p * 4;
    for (std::int64_t r0 = 0; r0 < rows_p; r0 += 32) {
      float* c = ot + r0;
      T::template load<0>(c, ldc);
      T::template load<1>(c + 16, ldc);
      if constexpr (kTwo) {
        T::template load<2>(c + 16 * rows_p, ldc);
        T::template load<3>(c + 16 * rows_p + 16, ldc);
      }
      for (std::int64_t c0 = 0; c0 < bcp; c0 += 32) {
        const std::uint16_t* b = p2 + (c0 / 2 * rows_p + r0) * 2;
        for (int l = 0; l < (kTwo ? 32 : 16); ++l) __builtin_prefetch(vt + l * ldv + c0 + 32);  // the next Vᵀ block
        T::template load<4>(vt + c0, lda);
        T::template load<6>(b, ldb);
        T::template load<7>(b + 32, ldb);
        T::template dot<0, 4, 6>();
        T::template dot<1, 4, 7>();
        if constexpr (kTwo) {
          T::template load<5>(vt + 16 * ldv + c0, lda);
          T::template dot<2, 5, 6>();
          T::template dot<3, 5, 7>();
        }
      }
      T::template store<0>(c, ldc);
      T::template store<1>(c + 16, ldc);
      if constexpr (kTwo) {
        T::template store<2>(c + 16 * rows_p, ldc);
        T::template store<3>(c + 16 * rows_p + 16, ldc);
      }
    }
  }
};

}  // namespace attn::cpu::amx
