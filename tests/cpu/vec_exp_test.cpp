// The vectorised exp of each ISA's traits (src/cpu/isa/vec_*.hpp) against std::exp in fp64:
// at most 2 ulp on [-87, 88], exactly 0 for -inf and far-negative inputs, NaN kept. The traits'
// W × W transpose and −inf select (the forward's additive pass) against index swaps written here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593 in AVX-512 intrinsics
#pragma GCC diagnostic ignored "-Wuninitialized"        // (the same bug: _mm512_undefined_ps)
#endif

#include <gtest/gtest.h>
#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cpu/isa.hpp"
#include "cpu/isa/kernel_includes.hpp"
#include "cpu/isa/vec_scalar.hpp"

#define ATTN_ISA_TARGET "avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx2.hpp"
namespace attn::test {
namespace {
void exp_avx2(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i + 8 <= n; i += 8) cpu::isa::Avx2::store(y + i, cpu::isa::Avx2::exp(cpu::isa::Avx2::load(x + i)));
}
/// block [8 × 8] row-major, transposed in place; sel[i] = a[i] == -inf ? t[i] : e[i].
void transpose_avx2(float* block, const float* a, const float* t, const float* e, float* sel) {
  using I = cpu::isa::Avx2;
  I::V r[8];
  for (int l = 0; l < 8; ++l) r[l] = I::load(block + 8 * l);
  I::transpose(r);
  for (int l = 0; l < 8; ++l) I::store(block + 8 * l, r[l]);
  I::store(sel, I::if_neg_inf(I::load(a), I::load(t), I::load(e)));
}
}  // namespace
}  // namespace attn::test
#include "cpu/isa/isa_end.hpp"

#undef ATTN_ISA_TARGET
#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512.hpp"
namespace attn::test {
namespace {
void exp_avx512(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i + 16 <= n; i += 16)
    cpu::isa::Avx512::store(y + i, cpu::isa::Avx512::exp(cpu::isa::Avx512::load(x + i)));
}
void transpose_avx512(float* block, const float* a, const float* t, const float* e, float* sel) {
  using I = cpu::isa::Avx512;
  I::V r[16];
  for (int l = 0; l < 16; ++l) r[l] = I::load(block + 16 * l);
  I::transpose(r);
  for (int l = 0; l < 16; ++l) I::store(block + 16 * l, r[l]);
  I::store(sel, I::if_neg_inf(I::load(a), I::load(t), I::load(e)));
}
}  // namespace
}  // namespace attn::test
#include "cpu/isa/isa_end.hpp"

namespace attn::test {
namespace {

/// Distance in units in the last place between a float result and the fp64 truth.
double ulp_error(float got, double truth) {
  const float t = static_cast<float>(truth);
  const float ulp = std::nextafter(std::abs(t), std::numeric_limits<float>::infinity()) - std::abs(t);
  return std::abs(static_cast<double>(got) - truth) / static_cast<double>(ulp);
}

std::vector<float> inputs() {
  std::vector<float> x;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-87.0f, 88.0f);
  for (int i = 0; i < 1 << 16; ++i) x.push_back(d(rng));
  std::uniform_real_distribution<float> small(-1.0f, 1.0f);  // softmax lives near 0 and below
  for (int i = 0; i < 1 << 14; ++i) x.push_back(small(rng));
  for (float v : {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.34657359f, 0.34657359f, -87.0f, 88.0f}) x.push_back(v);
  while (x.size() % 16) x.push_back(0.0f);
  return x;
}

template <class Fn>
void check_exp(Fn&& fn, const char* name) {
  const std::vector<float> x = inputs();
  std::vector<float> y(x.size());
  fn(x.data(), y.data(), x.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, ulp_error(y[i], std::exp(static_cast<double>(x[i]))));
  EXPECT_LE(worst, 2.0) << name;
  const float special[16] = {-std::numeric_limits<float>::infinity(), -200.0f, -1e30f, std::numeric_limits<float>::quiet_NaN(),
                             -88.0f, -100.0f, -87.5f, -std::numeric_limits<float>::infinity(), 0, 0, 0, 0, 0, 0, 0, 0};
  float out[16];
  fn(special, out, 16);
  EXPECT_EQ(out[0], 0.0f) << name << ": exp(-inf)";
  EXPECT_EQ(out[1], 0.0f) << name;
  EXPECT_EQ(out[2], 0.0f) << name;
  EXPECT_TRUE(std::isnan(out[3])) << name << ": NaN must propagate";
  EXPECT_EQ(out[7], 0.0f) << name;
  EXPECT_EQ(out[8], 1.0f) << name << ": exp(0)";
}

TEST(CpuVecExp, ScalarWithinTwoUlp) {
  check_exp([](const float* x, float* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = cpu::isa::Scalar::exp(x[i]);
  }, "scalar");
}

TEST(CpuVecExp, Avx2WithinTwoUlp) {
  if (!cpu::isa_supported("avx2")) GTEST_SKIP() << "this CPU has no AVX2";
  check_exp(exp_avx2, "avx2");
}

TEST(CpuVecExp, Avx512WithinTwoUlp) {
  if (!cpu::isa_supported("avx512")) GTEST_SKIP() << "this CPU has no AVX-512";
  check_exp(exp_avx512, "avx512");
}

/// fn(block, a, t, e, sel) of a W-lane ISA: the block transposed, the select lane by lane.
template <class Fn>
void check_transpose(Fn&& fn, int W, const char* name) {
  std::vector<float> block(static_cast<std::size_t>(W * W)), a(16), t(16), e(16), sel(16);
  for (int i = 0; i < W * W; ++i) block[static_cast<std::size_t>(i)] = static_cast<float>(1000 + i);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float lanes[16] = {-inf, 0.0f, inf, nan, -inf, -1e30f, -inf, 3.0f, -inf, -inf, 1.0f, -0.0f, nan, -inf, 2.0f, -inf};
  for (int l = 0; l < 16; ++l) {
    a[static_cast<std::size_t>(l)] = lanes[l];
    t[static_cast<std::size_t>(l)] = static_cast<float>(-l);
    e[static_cast<std::size_t>(l)] = static_cast<float>(100 + l);
  }
  fn(block.data(), a.data(), t.data(), e.data(), sel.data());
  for (int r = 0; r < W; ++r)
    for (int c = 0; c < W; ++c)
      EXPECT_EQ(block[static_cast<std::size_t>(r * W + c)], static_cast<float>(1000 + c * W + r)) << name << " row " << r << " col " << c;
  for (int l = 0; l < W; ++l)
    EXPECT_EQ(sel[static_cast<std::size_t>(l)], lanes[l] == -inf ? static_cast<float>(-l) : static_cast<float>(100 + l)) << name << " lane " << l;
}

TEST(CpuVecTranspose, Avx2) {
  if (!cpu::isa_supported("avx2")) GTEST_SKIP() << "this CPU has no AVX2";
  check_transpose(transpose_avx2, 8, "avx2");
}

TEST(CpuVecTranspose, Avx512) {
  if (!cpu::isa_supported("avx512")) GTEST_SKIP() << "this CPU has no AVX-512";
  check_transpose(transpose_avx512, 16, "avx512");
}

TEST(CpuVecTranspose, Scalar) {
  check_transpose([](float* block, const float* a, const float* t, const float* e, float* sel) {
    cpu::isa::Scalar::transpose(block);
    sel[0] = cpu::isa::Scalar::if_neg_inf(a[0], t[0], e[0]);
  }, 1, "scalar");
}

}  // namespace
}  // namespace attn::test
