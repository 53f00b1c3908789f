// bf16 / f16 <-> f32 conversions (src/core/tensor.cpp) on hand-picked bit patterns: round to
// nearest even both ways, subnormals, the largest finite values, overflow to Inf, ±0, ±Inf, NaN.

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "attn/tensor.hpp"

namespace {

float f32_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t bits_of(float x) { return std::bit_cast<std::uint32_t>(x); }

TEST(CoreDtype, Bf16RoundsToNearestEven) {
  EXPECT_EQ(attn::f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x3F808000u)), 0x3F80);  // tie, 0x3F80 is even: down
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x3F818000u)), 0x3F82);  // tie, 0x3F81 is odd: up
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x3F808001u)), 0x3F81);  // above the tie
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x3F807FFFu)), 0x3F80);  // below the tie
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0xBF818000u)), 0xBF82);  // negative tie
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x3FFF8000u)), 0x4000);  // carry into the exponent
}

TEST(CoreDtype, Bf16SubnormalsZerosAndLimits) {
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x00010000u)), 0x0001);  // smallest bf16 subnormal, exact
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x00018000u)), 0x0002);  // subnormal tie to even
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x00008000u)), 0x0000);  // half the smallest: to even (0)
  EXPECT_EQ(attn::f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(attn::f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x7F7F7FFFu)), 0x7F7F);  // rounds to the largest finite bf16
  EXPECT_EQ(attn::f32_to_bf16(f32_bits(0x7F7F8000u)), 0x7F80);  // tie above the largest finite: Inf
  EXPECT_EQ(attn::f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(attn::f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(attn::f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
}

TEST(CoreDtype, Bf16NanStaysNan) {
  // 0x7F800001 would truncate/round to Inf's bits if NaN were not handled.
  for (std::uint32_t bits : {0x7F800001u, 0x7FC00000u, 0xFF800001u, 0x7FFFFFFFu}) {
    const std::uint16_t h = attn::f32_to_bf16(f32_bits(bits));
    EXPECT_TRUE(std::isnan(attn::bf16_to_f32(h))) << std::hex << bits << " -> " << h;
    EXPECT_EQ(h & 0x8000u, (bits >> 16) & 0x8000u) << "sign kept";
  }
}

TEST(CoreDtype, Bf16ToF32IsExact) {
  EXPECT_EQ(attn::bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bits_of(attn::bf16_to_f32(0x0001)), 0x00010000u);
  EXPECT_EQ(bits_of(attn::bf16_to_f32(0x8000)), 0x80000000u);
  EXPECT_EQ(attn::bf16_to_f32(0x7F7F), f32_bits(0x7F7F0000u));
  EXPECT_EQ(attn::bf16_to_f32(0xFF80), -std::numeric_limits<float>::infinity());
  // Every non-NaN bf16 survives the round trip bit for bit.
  for (std::uint32_t h = 0; h <= 0xFFFFu; ++h) {
    const float x = attn::bf16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(x)) continue;
    ASSERT_EQ(attn::f32_to_bf16(x), h) << std::hex << h;
  }
}

TEST(CoreDtype, F16RoundsToNearestEven) {
  EXPECT_EQ(attn::f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(attn::f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(attn::f32_to_f16(f32_bits(0x3F801000u)), 0x3C00);  // 1 + 2^-11: tie, 0x3C00 even: down
  EXPECT_EQ(attn::f32_to_f16(f32_bits(0x3F803000u)), 0x3C02);  // 1 + 3·2^-11: tie, 0x3C01 odd: up
  EXPECT_EQ(attn::f32_to_f16(f32_bits(0x3F801001u)), 0x3C01);  // just above the tie
  EXPECT_EQ(attn::f32_to_f16(f32_bits(0x3FFFF000u)), 0x4000);  // carry into the exponent
}

TEST(CoreDtype, F16SubnormalsZerosAndOverflow) {
  const float tiny = std::ldexp(1.0f, -24);  // smallest f16 subnormal
  EXPECT_EQ(attn::f32_to_f16(tiny), 0x0001);
  EXPECT_EQ(attn::f32_to_f16(-tiny), 0x8001);
  EXPECT_EQ(attn::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie with 0: to even
  EXPECT_EQ(attn::f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(attn::f32_to_f16(1.5f * tiny), 0x0002);  // tie between 1 and 2: to even
  EXPECT_EQ(attn::f32_to_f16(2.5f * tiny), 0x0002);  // tie between 2 and 3: to even
  EXPECT_EQ(attn::f32_to_f16(std::ldexp(1.0f, -26)), 0x0000);
  EXPECT_EQ(attn::f32_to_f16(1023.0f * tiny), 0x03FF);         // largest subnormal
  EXPECT_EQ(attn::f32_to_f16(1023.5f * tiny), 0x0400);         // tie into the smallest normal
  EXPECT_EQ(attn::f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(attn::f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(attn::f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(attn::f32_to_f16(65504.0f), 0x7BFF);  // largest finite
  EXPECT_EQ(attn::f32_to_f16(65519.0f), 0x7BFF);  // below the tie
  EXPECT_EQ(attn::f32_to_f16(65520.0f), 0x7C00);  // tie, 0x7BFF odd: Inf
  EXPECT_EQ(attn::f32_to_f16(1e5f), 0x7C00);
  EXPECT_EQ(attn::f32_to_f16(-1e5f), 0xFC00);
  EXPECT_EQ(attn::f32_to_f16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(attn::f32_to_f16(-std::numeric_limits<float>::infinity()), 0xFC00);
}

TEST(CoreDtype, F16NanStaysNan) {
  for (std::uint32_t bits : {0x7F800001u, 0x7FC00000u, 0xFF800001u, 0x7FFFFFFFu}) {
    const std::uint16_t h = attn::f32_to_f16(f32_bits(bits));
    EXPECT_TRUE(std::isnan(attn::f16_to_f32(h))) << std::hex << bits << " -> " << h;
    EXPECT_EQ(h & 0x8000u, (bits >> 16) & 0x8000u) << "sign kept";
  }
}

TEST(CoreDtype, F16ToF32IsExact) {
  EXPECT_EQ(attn::f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(attn::f16_to_f32(0x03FF), 1023.0f * std::ldexp(1.0f, -24));
  EXPECT_EQ(attn::f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(attn::f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(attn::f16_to_f32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(attn::f16_to_f32(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(attn::f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(attn::f16_to_f32(0x7C01)));
  EXPECT_EQ(bits_of(attn::f16_to_f32(0x8000)), 0x80000000u);
  for (std::uint32_t h = 0; h <= 0xFFFFu; ++h) {
    const float x = attn::f16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(x)) continue;
    ASSERT_EQ(attn::f32_to_f16(x), h) << std::hex << h;
  }
}

TEST(CoreDtype, LoadStoreRoundThroughTheDtype) {
  std::uint16_t h = 0;
  const attn::TensorView bf(&h, attn::DType::bf16, {1});
  attn::store_f64(bf, 0, 1.0 + 1.0 / 256.0);  // a bf16 tie: rounds to even (1.0)
  EXPECT_EQ(h, 0x3F80);
  EXPECT_EQ(attn::load_f64(bf, 0), 1.0);
  const attn::TensorView hf(&h, attn::DType::f16, {1});
  attn::store_f64(hf, 0, 65504.0);
  EXPECT_EQ(h, 0x7BFF);
  EXPECT_EQ(attn::load_f64(hf, 0), 65504.0);
  EXPECT_EQ(attn::dtype_size(attn::DType::bf16), 2u);
  EXPECT_STREQ(attn::dtype_name(attn::DType::f16), "f16");
  EXPECT_FALSE(attn::is_floating(attn::DType::i8));
}

}  // namespace
