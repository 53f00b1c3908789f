#pragma once
// AMX traits: the AVX-512 + AVX512_BF16 vector ops (softmax, P rounded to bf16 pairs) with the
// AMX tile operations for the two products of the bf16 forward (amx/fwd_tiles.hpp). The fp32 and
// fp16 paths and the backward are the AVX-512 ones; bf16 inputs never take the vdpbf16ps pair dot
// here (slower than fp32 on Intel, isa_select.cpp).

#include "cpu/amx/exp2.hpp"
#include "cpu/amx/tiles_hw.hpp"
#include "cpu/isa/vec_avx512bf16.hpp"

namespace attn::cpu::isa {

struct Amx : Avx512Bf16 {
  using Tiles = amx::HwTiles;
  static constexpr const char* kName = "amx";
  static constexpr std::int64_t kTileMinRows = 16;

  /// 2^t of the tile path's softmax (amx/exp2.hpp); the same steps as amx::exp2_poly.
  static __m512 exp2(__m512 t) {
    const __mmask16 tiny = _mm512_cmp_ps_mask(t, _mm512_set1_ps(amx::kExp2Min), _CMP_LT_OQ);  // 0 (not NaN)
    t = _mm512_max_ps(_mm512_set1_ps(amx::kExp2Min), t);  // vmaxps returns its second operand for NaN
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(amx::kExp2C5);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(amx::kExp2C4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(amx::kExp2C3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(amx::kExp2C2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(amx::kExp2C1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(amx::kExp2C0));
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(p, n));
  }
};

}  // namespace attn::cpu::isa
