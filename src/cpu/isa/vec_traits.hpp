#pragma once
// What an ISA's vector traits must provide to the templated kernels (forward, backward, decode, the
// bench's naive row passes), as a C++20 concept, and the constants every traits' exp shares.
// A traits struct describes W fp32 lanes in one register type V; the kernels' scratch buffers are
// sized for at most kMaxLanes lanes, which the concept checks at compile time. See
// docs/architecture.md (kernels: adding an ISA).

#include <concepts>
#include <cstdint>

namespace attn::cpu::isa {

/// The widest vector (in fp32 lanes) the kernels' buffers are sized for: per-lane scratch
/// (`float tile_max[kMaxLanes]`), the backward's row pitch and the forward's padded tile rows.
inline constexpr int kMaxLanes = 16;

// exp(x) = 2^n · e^r with n = round(x·log2 e), r = x − n·ln 2 (ln 2 split in a high part exact in
// fp32 and a low part, Cody–Waite), e^r ≈ 1 + r + r²·P(r), P of degree 5 (Cephes expf's minimax
// coefficients). Inputs are clamped to [kExpMin, kExpMax]; below kExpMin the result is 0.
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = -2.12194440e-4f;
inline constexpr float kExpMax = 88.3762626647949f;    // ln(FLT_MAX)
inline constexpr float kExpMin = -87.3365447505531f;   // ln(FLT_MIN): smaller inputs give 0
inline constexpr int kF32ExpBias = 127;                // 2^n = bits (n + bias) << mantissa bits
inline constexpr int kF32MantBits = 23;
inline constexpr float kExpP0 = 1.9875691500e-4f;      // r⁵ (highest) ... r⁰ coefficient of P
inline constexpr float kExpP1 = 1.3981999507e-3f;
inline constexpr float kExpP2 = 8.3334519073e-3f;
inline constexpr float kExpP3 = 4.1665795894e-2f;
inline constexpr float kExpP4 = 1.6666665459e-1f;
inline constexpr float kExpP5 = 5.0000001201e-1f;

/// An ISA's fp32 vector traits. Widening loads: bf16, f16 and i8 (the KV cache's int8 rows).
template <class I>
concept VecTraits = requires(const float* cp, float* p, const std::uint16_t* hp, const std::int8_t* bp,
                             typename I::V v, typename I::V* vp, float x, std::int64_t n) {
  typename I::V;
  requires std::same_as<decltype(I::W), const int>;
  requires I::W >= 1 && I::W <= kMaxLanes && kMaxLanes % I::W == 0;  // the buffers' limit
  requires I::kQkRows >= 1 && I::kPvRows >= 1 && I::kPvVecs >= 1;    // micro-tile shape
  { I::kName } -> std::convertible_to<const char*>;
  { I::zero() } -> std::same_as<typename I::V>;
  { I::set1(x) } -> std::same_as<typename I::V>;
  { I::load(cp) } -> std::same_as<typename I::V>;
  I::store(p, v);
  { I::fma(v, v, v) } -> std::same_as<typename I::V>;
  { I::add(v, v) } -> std::same_as<typename I::V>;
  { I::sub(v, v) } -> std::same_as<typename I::V>;
  { I::mul(v, v) } -> std::same_as<typename I::V>;
  { I::max(v, v) } -> std::same_as<typename I::V>;
  { I::hmax(v) } -> std::same_as<float>;
  { I::hsum(v) } -> std::same_as<float>;
  { I::keep_range(v, n, n, n, x) } -> std::same_as<typename I::V>;  // lanes c0 + l outside [lo, hi) -> fill
  { I::select_range(v, v, v, v, x) } -> std::same_as<typename I::V>;
  { I::exp(v) } -> std::same_as<typename I::V>;  // ≤ 2 ulp on [kExpMin, kExpMax], 0 below, NaN kept
  { I::if_neg_inf(v, v, v) } -> std::same_as<typename I::V>;  // lanes where a = −inf take the 2nd, else the 3rd
  I::transpose(vp);  // W vectors in place: vp[l][k] becomes vp[k][l] (a W × W block, rows to lanes)
  { I::load_bf16(hp) } -> std::same_as<typename I::V>;
  { I::load_f16(hp) } -> std::same_as<typename I::V>;
  { I::load_i8(bp) } -> std::same_as<typename I::V>;
};

}  // namespace attn::cpu::isa
