// The tile-operation interface (cpu/amx/tiles.hpp): the emulation's tdpbf16ps against an fp64
// product of the same bf16 values in the pair-interleaved B layout, the two forward products
// (cpu/amx/fwd_tiles.hpp) on it against plain loops over the packed layouts, and, where this
// process can run AMX, the instructions (tiles_hw.hpp) against the emulation.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/half.hpp"
#include "cpu/amx/fwd_tiles.hpp"
#include "cpu/amx/tiles.hpp"
#include "cpu/isa.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16")
#endif
#include "cpu/amx/tiles_hw.hpp"
namespace attn::test {
namespace {
// C (16 × 16 fp32) += A·B on the AMX instructions.
void hw_dot(const std::uint16_t* a, const std::uint16_t* b, float* c) {
  using T = cpu::amx::HwTiles;
  T::begin();
  T::load<0>(c, 64);
  T::load<4>(a, 64);
  T::load<6>(b, 64);
  T::dot<0, 4, 6>();
  T::store<0>(c, 64);
  T::end();
}
}  // namespace
}  // namespace attn::test
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace attn::test {
namespace {

using cpu::amx::EmuTiles;

std::vector<std::uint16_t> random_bf16(std::size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d;
  std::vector<std::uint16_t> r(n);
  for (auto& x : r) x = core::f32_to_bf16(d(rng));
  return r;
}
float f(std::uint16_t h) { return core::bf16_to_f32(h); }

void emu_dot(const std::uint16_t* a, const std::uint16_t* b, float* c) {
  EmuTiles::begin();
  EmuTiles::load<0>(c, 64);
  EmuTiles::load<4>(a, 64);
  EmuTiles::load<6>(b, 64);
  EmuTiles::dot<0, 4, 6>();
  EmuTiles::store<0>(c, 64);
  EmuTiles::end();
}

TEST(AmxTiles, EmulatedDotIsThePairInterleavedProduct) {
  std::mt19937_64 rng(5);
  const auto a = random_bf16(16 * 32, rng), b = random_bf16(16 * 32, rng);  // A 16 × 32, B 16 pairs × 16
  std::vector<float> c(256);
  for (int i = 0; i < 256; ++i) c[i] = static_cast<float>(i % 7) - 3.0f;
  const std::vector<float> c0 = c;
  emu_dot(a.data(), b.data(), c.data());
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      double want = c0[m * 16 + n], mag = std::abs(want);
      for (int k = 0; k < 32; ++k) {  // B[k][n] of the plain 32 × 16 matrix is pair row k/2, element k%2
        const double t = static_cast<double>(f(a[m * 32 + k])) * f(b[(k / 2) * 32 + 2 * n + k % 2]);
        want += t;
        mag += std::abs(t);
      }
      EXPECT_NEAR(c[m * 16 + n], want, 1e-6 * mag) << m << "," << n;
    }
}

TEST(AmxTiles, HardwareDotMatchesEmulation) {
#if defined(__x86_64__)
  if (!cpu::isa_supported("amx")) GTEST_SKIP() << "this CPU/OS/process cannot run AMX tiles";
  std::mt19937_64 rng(6);
  for (int rep = 0; rep < 20; ++rep) {
    const auto a = random_bf16(16 * 32, rng), b = random_bf16(16 * 32, rng);
    std::vector<float> c_hw(256), c_emu(256);
    for (int i = 0; i < 256; ++i) c_hw[i] = c_emu[i] = f(random_bf16(1, rng)[0]);
    hw_dot(a.data(), b.data(), c_hw.data());
    emu_dot(a.data(), b.data(), c_emu.data());
    for (int i = 0; i < 256; ++i) {
      double mag = std::abs(c_emu[i]);
      for (int k = 0; k < 32; ++k) mag += std::abs(f(a[(i / 16) * 32 + k]) * f(b[(k / 2) * 32 + 2 * (i % 16) + k % 2]));
      EXPECT_NEAR(c_hw[i], c_emu[i], 1e-6 * mag) << i;  // the order of the fp32 sums may differ
    }
  }
#else
  GTEST_SKIP() << "not an x86-64 build";
#endif
}

// Sᵀ = K·Qᵀ and Oᵀ += Vᵀ·Pᵀ of fwd_tiles.hpp on the emulation, against loops over the packed layouts.
TEST(AmxTiles, ForwardProductsOnEmulation) {
  std::mt19937_64 rng(7);
  const std::int64_t Dp = 64, rows_p = 64, bc = 40, bcp = 64, dvp = 48;
  const auto k = random_bf16(bcp * Dp, rng), q2 = random_bf16(Dp * rows_p, rng);  // K rows; Qᵀ pairs [Dp/2][rows_p][2]
  std::vector<float> st(bcp * rows_p, 0.0f);
  cpu::amx::FwdTiles<EmuTiles>::qk(k.data(), Dp, q2.data(), rows_p, bc, st.data());
  for (std::int64_t c = 0; c < bcp; ++c)  // whole 32-key blocks: rows up to 64
    for (std::int64_t r = 0; r < rows_p; ++r) {
      double want = 0, mag = 0;
      for (std::int64_t d = 0; d < Dp; ++d) {
        const double t = static_cast<double>(f(k[c * Dp + d])) * f(q2[((d / 2) * rows_p + r) * 2 + d % 2]);
        want += t;
        mag += std::abs(t);
      }
      ASSERT_NEAR(st[c * rows_p + r], want, 1e-6 * mag) << c << "," << r;
    }
  const std::int64_t ldv = bcp + 8;  // Vᵀ rows with a gap
  const auto vt = random_bf16(dvp * ldv, rng), p2 = random_bf16(bcp * rows_p, rng);  // Pᵀ pairs [bcp/2][rows_p][2]
  std::vector<float> ot(dvp * rows_p);
  for (std::size_t i = 0; i < ot.size(); ++i) ot[i] = static_cast<float>(i % 5);
  const std::vector<float> ot0 = ot;
  cpu::amx::FwdTiles<EmuTiles>::pv(vt.data(), ldv, p2.data(), rows_p, bcp, dvp, ot.data());
  for (std::int64_t d = 0; d < dvp; ++d)
    for (std::int64_t r = 0; r < rows_p; ++r) {
      double want = ot0[d * rows_p + r], mag = std::abs(want);
      for (std::int64_t c = 0; c < bcp; ++c) {
        const double t = static_cast<double>(f(vt[d * ldv + c])) * f(p2[((c / 2) * rows_p + r) * 2 + c % 2]);
        want += t;
        mag += std::abs(t);
      }
      ASSERT_NEAR(ot[d * rows_p + r], want, 1e-6 * mag) << d << "," << r;
    }
}

}  // namespace
}  // namespace attn::test
