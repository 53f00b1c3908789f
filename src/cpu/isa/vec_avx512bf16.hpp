#pragma once
// AVX-512 + AVX512_BF16 traits: the AVX-512 vector ops plus the bf16 pair-dot paths of the forward
// for bf16 inputs (docs/architecture.md §7). vdpbf16ps multiplies pairs of bf16 and accumulates in fp32:
//   QK: Sᵀ[c][r] += Σ_pairs K[c][2p..2p+1]·Qᵀ[2p..2p+1][r]  — K pair broadcast (in place for even
//       D), Qᵀ packed as [D/2][rows][2];
//   PV: O[r][d]   += Σ_pairs P[r][2p..2p+1]·V[2p..2p+1][d]  — P rounded to bf16 (RNE) and packed as
//       [bc/2][rows][2], V packed as [bc/2][Dv][2].
// Rounding P to bf16 adds ≈ 2⁻⁹ relative error per term, as in PyTorch's and IPEX's CPU paths.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/isa/vec_avx512.hpp"

namespace attn::cpu::isa {

struct Avx512Bf16 : Avx512 {
  static constexpr bool kBf16Dot = true;
  static constexpr const char* kName = "avx512bf16";

  using PairVec = __m512i;  // 16 lanes of bf16 pairs
  static PairVec load_pairs(const std::uint16_t* p) { return _mm512_loadu_si512(p); }
  static void store_pairs(std::uint16_t* p, PairVec v) { _mm512_storeu_si512(p, v); }
  /// Broadcast of one bf16 pair read from memory (a vbroadcastss with a memory operand).
  static PairVec bcast_pair(const std::uint16_t* p) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return _mm512_castps_si512(_mm512_set1_ps(f));
  }
  static __m512 dot(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b));
  }
  /// 16 lanes of pairs (lo[i], hi[i]) from two rows of 16 floats, rounded to bf16.
  /// (vcvtne2ps2bf16 puts lo in the low 16 elements and hi in the high 16; vpermw interleaves them.)
  static __m512i pairs_f32(__m512 lo, __m512 hi) {
    const __m512bh both = _mm512_cvtne2ps_pbh(hi, lo);
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                                21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, reinterpret_cast<const __m512i&>(both));
  }
  /// 16 lanes of pairs (lo[i], hi[i]) from two rows of n ≤ 16 bf16 values (rest zero).
  static __m512i pairs_bf16(const std::uint16_t* lo, const std::uint16_t* hi, int n) {
    const __mmask16 m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u);
    const __m512i a32 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, lo));
    const __m512i b32 = hi ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, hi)) : _mm512_setzero_si512();
    return _mm512_or_si512(a32, _mm512_slli_epi32(b32, 16));
  }
};
static_assert(VecTraits<Avx512Bf16>);

}  // namespace attn::cpu::isa
