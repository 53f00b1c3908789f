#pragma once
// 2^t for the probabilities of the tile path's softmax (FwdKernel::softmax_tile_pairs, docs/amx.md):
// t = n + f with n = round(t) and f in [-1/2, 1/2], 2^f by a degree-5 polynomial, then scaled by
// 2^n (vscalefps on AVX-512, std::ldexp in the emulation). P is rounded to bf16 (2^-9 relative)
// right after, so the polynomial's 2.1e-7 relative error (fp32 Horner with FMA, measured on 2e5
// points of [-1/2, 1/2]) is far below what P keeps; l is summed from these same values. Inputs
// below kExp2Min give exactly 0 (hidden keys, t = -inf, too); NaN stays NaN. The vector form
// computes them clamped to kExp2Min, whose 2^t is a normal float, and then selects 0: letting
// vscalefps underflow costs a microcode assist per element (a 30 % bool mask made the bf16
// forward 4–7× slower, docs/performance.md §2.2). Coefficients: a least-squares fit of the relative error on Chebyshev nodes,
// reweighted toward its peaks (Lawson), computed with numpy for this file.

#include <cmath>

namespace attn::cpu::amx {

inline constexpr float kExp2C0 = 1.0000001192e+00f;
inline constexpr float kExp2C1 = 6.9314694405e-01f;
inline constexpr float kExp2C2 = 2.4022120237e-01f;
inline constexpr float kExp2C3 = 5.5507134646e-02f;
inline constexpr float kExp2C4 = 9.6755409613e-03f;
inline constexpr float kExp2C5 = 1.3276465470e-03f;
inline constexpr float kExp2Min = -125.0f;  // 2^t ≥ 2^-125.5 > FLT_MIN for t ≥ kExp2Min

/// The scalar form (the emulated tile ISA's traits, and the reference for the vector form's test).
inline float exp2_poly(float t) {
  if (std::isnan(t)) return t;
  if (t < kExp2Min) return 0.0f;
  const float n = std::nearbyint(t), f = t - n;
  float p = kExp2C5;
  p = std::fma(p, f, kExp2C4);
  p = std::fma(p, f, kExp2C3);
  p = std::fma(p, f, kExp2C2);
  p = std::fma(p, f, kExp2C1);
  p = std::fma(p, f, kExp2C0);
  return std::ldexp(p, static_cast<int>(n));
}

}  // namespace attn::cpu::amx
