#pragma once
// AVX-512 (F/BW/DQ/VL) vector traits: 16 fp32 lanes in a zmm register. Register budget (32 zmm):
// QK micro-tile 12 x 32 (24 accumulators + 2 K + broadcast), PV micro-tile 6 x 64 (24 acc.).

#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "cpu/isa/vec_traits.hpp"

namespace attn::cpu::isa {

struct Avx512 {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int kQkRows = 12;
  static constexpr int kPvRows = 6;
  static constexpr int kPvVecs = 4;
  static constexpr const char* kName = "avx512";

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  static V keep_range(V v, std::int64_t c0, std::int64_t lo, std::int64_t hi, float fill) {
    const __m512i lane = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(c0)),
                                          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __mmask16 in = _mm512_cmpge_epi32_mask(lane, _mm512_set1_epi32(static_cast<int>(lo))) &
                         _mm512_cmplt_epi32_mask(lane, _mm512_set1_epi32(static_cast<int>(hi)));
    return _mm512_mask_blend_ps(in, _mm512_set1_ps(fill), v);
  }
  static V select_range(V x, V c, V lo, V hi, float fill) {
    const __mmask16 in = _mm512_cmp_ps_mask(c, lo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(c, hi, _CMP_LT_OQ);
    return _mm512_mask_blend_ps(in, _mm512_set1_ps(fill), x);
  }
  /// e^x (Cephes-style range reduction + degree-6 polynomial, ≤ 2 ulp); 0 below -87.3; NaN kept.
  static V exp(V x) {
    const V hi = _mm512_set1_ps(kExpMax), lo = _mm512_set1_ps(kExpMin);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const V x_in = x;
    // Lanes below kExpMin (hidden keys: −inf) are computed from 0 and then zeroed: clamped to
    // kExpMin their 2^n·p would land just below FLT_MIN, a denormal that costs a microcode assist.
    x = _mm512_mask_mov_ps(_mm512_min_ps(_mm512_max_ps(x, lo), hi), under, _mm512_setzero_ps());
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    V p = _mm512_set1_ps(kExpP0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const V y = _mm512_scalef_ps(p, n);
    return _mm512_mask_blend_ps(nan, _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), y), x_in);
  }
  /// then_v where a = −inf, else else_v (lane-wise).
  static V if_neg_inf(V a, V then_v, V else_v) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_EQ_OQ), else_v, then_v);
  }
  /// r[0..16) as the rows of a 16 × 16 block, transposed in place: r[k][l] = old r[l][k].
  static void transpose(V* r) {
    V t[16], u[16];
    for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved within 128-bit lanes
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // u[i + k], 128-bit lane L: column 4L + k of rows i .. i+3
      u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
      u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
      u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {  // column 4L + k gathers lane L of u[k], u[4 + k], u[8 + k], u[12 + k]
      const V x0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x44), x1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xEE);
      const V y0 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x44), y1 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xEE);
      r[k] = _mm512_shuffle_f32x4(x0, y0, 0x88);
      r[4 + k] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
      r[8 + k] = _mm512_shuffle_f32x4(x1, y1, 0x88);
      r[12 + k] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
  }
  static V load_bf16(const std::uint16_t* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
  static V load_f16(const std::uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  /// 16 int8 values -> 16 floats.
  static V load_i8(const std::int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
};
static_assert(VecTraits<Avx512>);

}  // namespace attn::cpu::isa
