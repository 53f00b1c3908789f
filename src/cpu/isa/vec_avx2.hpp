#pragma once
// AVX2 + FMA vector traits for the templated cpu kernels: 8 fp32 lanes in a ymm register.
// Register budget (16 ymm): QK micro-tile 6 x 16 (12 accumulators + 2 K + 1 broadcast, the
// classic Haswell 6x16 shape), PV micro-tile 6 x 16.

#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "cpu/isa/vec_traits.hpp"

namespace attn::cpu::isa {

struct Avx2 {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int kQkRows = 6;   // QK micro-tile rows (x 2 vectors of columns)
  static constexpr int kPvRows = 6;   // PV micro-tile rows
  static constexpr int kPvVecs = 2;   // PV micro-tile width in vectors
  static constexpr const char* kName = "avx2";

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static float hmax(V v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  /// Lanes whose column c0 + lane lies outside [lo, hi) become `fill`.
  static V keep_range(V v, std::int64_t c0, std::int64_t lo, std::int64_t hi, float fill) {
    const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(c0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i below = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lo)), lane);
    const __m256i inside_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), lane);
    const __m256i out = _mm256_or_si256(below, _mm256_xor_si256(inside_hi, _mm256_set1_epi32(-1)));
    return _mm256_blendv_ps(v, _mm256_set1_ps(fill), _mm256_castsi256_ps(out));
  }
  /// x where lo <= c < hi (lane-wise, positions as exact floats), else `fill`.
  static V select_range(V x, V c, V lo, V hi, float fill) {
    const V in = _mm256_and_ps(_mm256_cmp_ps(c, lo, _CMP_GE_OQ), _mm256_cmp_ps(c, hi, _CMP_LT_OQ));
    return _mm256_blendv_ps(_mm256_set1_ps(fill), x, in);
  }
  /// e^x with ≤ 2 ulp error on [-87, 88]; exactly 0 below -87.3 (so exp(-inf) = 0).
  static V exp(V x) {
    const V hi = _mm256_set1_ps(kExpMax), lo = _mm256_set1_ps(kExpMin);
    const V under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    const V nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    const V x_in = x;
    // Lanes below kExpMin (hidden keys: −inf) are computed from 0 and then zeroed: clamped to
    // kExpMin their p·2^n would land just below FLT_MIN, a denormal that costs a microcode assist.
    x = _mm256_andnot_ps(under, _mm256_min_ps(_mm256_max_ps(x, lo), hi));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    V p = _mm256_set1_ps(kExpP0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(kF32ExpBias)), kF32MantBits);
    const V y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_blendv_ps(_mm256_andnot_ps(under, y), x_in, nan);
  }
  /// then_v where a = −inf, else else_v (lane-wise).
  static V if_neg_inf(V a, V then_v, V else_v) {
    return _mm256_blendv_ps(else_v, then_v, _mm256_cmp_ps(a, _mm256_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_EQ_OQ));
  }
  /// r[0..8) as the rows of an 8 × 8 block, transposed in place: r[k][l] = old r[l][k].
  static void transpose(V* r) {
    V t[8], u[8];
    for (int i = 0; i < 8; i += 2) {  // pairs of rows interleaved within 128-bit halves
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  // u[i + k]: column k (low half) and 4 + k (high half) of rows i .. i+3
      u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
      u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {
      r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
      r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
  }
  /// 8 bf16 / fp16 values -> 8 floats.
  static V load_bf16(const std::uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static V load_f16(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  /// 8 int8 values -> 8 floats.
  static V load_i8(const std::int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
};
static_assert(VecTraits<Avx2>);

}  // namespace attn::cpu::isa
