// The tile path's 2^t (src/cpu/amx/exp2.hpp): the scalar form against std::exp2 in fp64 (relative
// error ≤ 4e-7 wherever the result is a normal float), exactly 0 for -inf and far-negative inputs,
// NaN kept; and the AVX-512 form of the amx traits (isa/vec_amx.hpp) bit for bit equal to the
// scalar form, where the CPU has AVX-512.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593 in AVX-512 intrinsics
#endif

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cpu/amx/exp2.hpp"
#include "cpu/isa.hpp"
#include "cpu/isa/kernel_includes.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c,amx-tile,amx-bf16"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_amx.hpp"
namespace attn::test {
namespace {
void exp2_amx(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i + 16 <= n; i += 16)
    cpu::isa::Amx::store(y + i, cpu::isa::Amx::exp2(cpu::isa::Amx::load(x + i)));
}
}  // namespace
}  // namespace attn::test
#include "cpu/isa/isa_end.hpp"
#endif

namespace attn::test {
namespace {

std::vector<float> inputs() {
  std::vector<float> x;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> d(-125.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) x.push_back(d(rng));
  for (float v = -2.0f; v <= 2.0f; v += 0.0625f) x.push_back(v);  // the half-integer edges of the reduction
  for (float v : {0.5f, -0.5f, 1.5f, -1.5f, 0.0f, -0.0f})
    x.push_back(std::nextafter(v, 1.0f)), x.push_back(std::nextafter(v, -1.0f)), x.push_back(v);
  while (x.size() % 16) x.push_back(0.0f);
  return x;
}

TEST(AmxExp2, ScalarFormWithinRelativeBound) {
  double worst = 0.0;
  for (float t : inputs()) {
    const double truth = std::exp2(static_cast<double>(t));
    worst = std::max(worst, std::abs(cpu::amx::exp2_poly(t) - truth) / truth);
  }
  EXPECT_LE(worst, 4e-7);
}

TEST(AmxExp2, SpecialValues) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cpu::amx::exp2_poly(-kInf), 0.0f);
  EXPECT_EQ(cpu::amx::exp2_poly(-200.0f), 0.0f);
  EXPECT_EQ(cpu::amx::exp2_poly(-1e30f), 0.0f);
  EXPECT_TRUE(std::isnan(cpu::amx::exp2_poly(std::numeric_limits<float>::quiet_NaN())));
}

TEST(AmxExp2, VectorFormEqualsScalarForm) {
#if defined(__x86_64__)
  if (!cpu::isa_supported("avx512")) GTEST_SKIP() << "this CPU has no AVX-512";
  std::vector<float> x = inputs();
  for (float v : {-std::numeric_limits<float>::infinity(), -200.0f, -1e30f, std::numeric_limits<float>::quiet_NaN()})
    x.push_back(v);
  while (x.size() % 16) x.push_back(-1.0f);
  std::vector<float> y(x.size());
  exp2_amx(x.data(), y.data(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float want = cpu::amx::exp2_poly(x[i]);
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(y[i])) << x[i];
    else
      EXPECT_EQ(std::bit_cast<std::uint32_t>(y[i]), std::bit_cast<std::uint32_t>(want)) << x[i];
  }
#else
  GTEST_SKIP() << "not an x86-64 build";
#endif
}

}  // namespace
}  // namespace attn::test
