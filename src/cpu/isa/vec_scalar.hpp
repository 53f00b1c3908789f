#pragma once
// Scalar "vector" traits (1 lane): the portable fallback. The same templated kernels compile to
// plain loops; the compiler may auto-vectorise them for the baseline ISA.

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/half.hpp"
#include "cpu/isa/vec_traits.hpp"

namespace attn::cpu::isa {

struct Scalar {
  using V = float;
  static constexpr int W = 1;
  static constexpr int kQkRows = 4;
  static constexpr int kPvRows = 4;
  static constexpr int kPvVecs = 4;
  static constexpr const char* kName = "scalar";

  static V zero() { return 0.0f; }
  static V set1(float x) { return x; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V max(V a, V b) { return a > b ? a : b; }
  static float hmax(V v) { return v; }
  static float hsum(V v) { return v; }
  static V keep_range(V v, std::int64_t c0, std::int64_t lo, std::int64_t hi, float fill) {
    return (c0 >= lo && c0 < hi) ? v : fill;
  }
  static V select_range(V x, V c, V lo, V hi, float fill) { return (c >= lo && c < hi) ? x : fill; }
  static V exp(V x) { return x < kExpMin ? 0.0f : std::exp(x); }
  static V if_neg_inf(V a, V then_v, V else_v) { return a == -std::numeric_limits<float>::infinity() ? then_v : else_v; }
  static void transpose(V*) {}  // a 1 × 1 block
  static V load_bf16(const std::uint16_t* p) { return core::bf16_to_f32(*p); }
  static V load_f16(const std::uint16_t* p) { return core::f16_to_f32(*p); }
  static V load_i8(const std::int8_t* p) { return static_cast<float>(*p); }
};
static_assert(VecTraits<Scalar>);

}  // namespace attn::cpu::isa
