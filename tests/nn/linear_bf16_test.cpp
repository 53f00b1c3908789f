// nn::set_float32_matmul_precision(bf16) (src/nn/gemm_bf16.cpp, src/nn/linear.cpp): Linear's
// forward and backward against fp64 sums of the bf16-rounded operands (rounded here, by the test's
// own round-to-nearest-even), odd sizes and a strided input; the rounding must be visible (far
// from the unrounded fp32 result), f64 modules ignore the setting, MultiheadAttention follows it.

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/nn/multihead_attention.hpp"
#include "cpu/sdpa_case.hpp"
#include "nn/gemm_bf16.hpp"

namespace attn::test {
namespace {

// bf16(x) as a double: round to nearest even on the top 16 bits (inputs here are finite).
double rounded(float x) {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t r = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  return static_cast<double>(std::bit_cast<float>(r));
}

std::vector<float> normal(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

#define SKIP_WITHOUT_DNNL() \
  if (!nn::bf16_matmul_available()) GTEST_SKIP() << "libattn built without oneDNN: no bf16 matmuls"

struct Sizes {
  std::int64_t M, in, out;
};
const Sizes kSizes[] = {{1, 1, 1}, {7, 7, 5}, {65, 33, 64}, {63, 130, 17}, {128, 64, 96}};

TEST(LinearBf16, ForwardIsTheFp32SumOfBf16RoundedOperands) {
  SKIP_WITHOUT_DNNL();
  const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
  for (const Sizes& s : kSizes) {
    for (bool bias : {true, false}) {
      nn::Linear<float> lin(s.in, s.out, bias, 11);
      if (bias) {
        const auto b = normal(static_cast<std::size_t>(s.out), 12);
        std::copy(b.begin(), b.end(), lin.bias());
      }
      const std::int64_t ldx = s.in + 3, ldy = s.out + 2;  // strided rows in and out
      const auto x = normal(static_cast<std::size_t>(s.M * ldx), 13 + s.M);
      std::vector<float> y(static_cast<std::size_t>(s.M * ldy), -7.0f);
      lin.forward(x.data(), s.M, ldx, y.data(), ldy);
      double err = 0, err_unrounded = 0, scale = 0;
      for (std::int64_t m = 0; m < s.M; ++m)
        for (std::int64_t o = 0; o < s.out; ++o) {
          double ref = bias ? lin.bias()[o] : 0.0, plain = ref, mag = 0;
          for (std::int64_t i = 0; i < s.in; ++i) {
            const float xv = x[m * ldx + i], wv = lin.weight()[o * s.in + i];
            ref += rounded(xv) * rounded(wv);
            plain += static_cast<double>(xv) * wv;
            mag += std::abs(static_cast<double>(xv) * wv);
          }
          const double got = y[m * ldy + o];
          err = std::max(err, std::abs(got - ref) / (mag + 1e-30));
          err_unrounded = std::max(err_unrounded, std::abs(got - plain) / (mag + 1e-30));
          scale = std::max(scale, mag);
        }
      // fp32 accumulation of exact bf16 products: a few fp32 ulps of the magnitude sum.
      EXPECT_LE(err, 1e-6) << s.M << "x" << s.in << "x" << s.out << " bias " << bias;
      // The inputs really were rounded: bf16 keeps 8 bits, so some output is off by ≫ fp32 ulps.
      if (s.in >= 7) {
        EXPECT_GE(err_unrounded, 1e-4) << s.M << "x" << s.in << "x" << s.out;
      }
      for (std::int64_t m = 0; m < s.M; ++m)  // the gap between output rows is untouched
        for (std::int64_t o = s.out; o < ldy; ++o) ASSERT_EQ(y[m * ldy + o], -7.0f);
    }
  }
}

TEST(LinearBf16, BackwardIsTheFp32SumOfBf16RoundedOperands) {
  SKIP_WITHOUT_DNNL();
  const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
  for (const Sizes& s : kSizes) {
    for (bool accumulate : {false, true}) {
      nn::Linear<float> lin(s.in, s.out, true, 21);
      const auto dw0 = normal(static_cast<std::size_t>(s.out * s.in), 22);
      const auto db0 = normal(static_cast<std::size_t>(s.out), 23);
      std::copy(dw0.begin(), dw0.end(), lin.weight_grad());
      std::copy(db0.begin(), db0.end(), lin.bias_grad());
      const auto x = normal(static_cast<std::size_t>(s.M * s.in), 24);
      const auto dy = normal(static_cast<std::size_t>(s.M * s.out), 25);
      const auto dx0 = normal(static_cast<std::size_t>(s.M * s.in), 26);
      std::vector<float> dx = dx0;
      lin.backward(x.data(), s.in, dy.data(), s.out, s.M, dx.data(), s.in, accumulate);
      double err_dx = 0, err_dw = 0, err_db = 0;
      for (std::int64_t m = 0; m < s.M; ++m)
        for (std::int64_t i = 0; i < s.in; ++i) {
          double ref = accumulate ? dx0[m * s.in + i] : 0.0, mag = std::abs(ref);
          for (std::int64_t o = 0; o < s.out; ++o) {
            const double p = rounded(dy[m * s.out + o]) * rounded(lin.weight()[o * s.in + i]);
            ref += p;
            mag += std::abs(p);
          }
          err_dx = std::max(err_dx, std::abs(dx[m * s.in + i] - ref) / (mag + 1e-30));
        }
      for (std::int64_t o = 0; o < s.out; ++o) {
        for (std::int64_t i = 0; i < s.in; ++i) {
          double ref = dw0[o * s.in + i], mag = std::abs(ref);
          for (std::int64_t m = 0; m < s.M; ++m) {
            const double p = rounded(dy[m * s.out + o]) * rounded(x[m * s.in + i]);
            ref += p;
            mag += std::abs(p);
          }
          err_dw = std::max(err_dw, std::abs(lin.weight_grad()[o * s.in + i] - ref) / (mag + 1e-30));
        }
        double ref = db0[o], mag = std::abs(ref);  // db sums the fp32 dy, unrounded
        for (std::int64_t m = 0; m < s.M; ++m) {
          ref += dy[m * s.out + o];
          mag += std::abs(dy[m * s.out + o]);
        }
        err_db = std::max(err_db, std::abs(lin.bias_grad()[o] - ref) / (mag + 1e-30));
      }
      EXPECT_LE(err_dx, 1e-6) << s.M << "x" << s.in << "x" << s.out << " accumulate " << accumulate;
      EXPECT_LE(err_dw, 1e-6) << s.M << "x" << s.in << "x" << s.out;
      EXPECT_LE(err_db, 1e-6) << s.M << "x" << s.in << "x" << s.out;
    }
  }
}

TEST(LinearBf16, F64ModulesIgnoreTheSettingAndTheGuardRestoresIt) {
  SKIP_WITHOUT_DNNL();
  ASSERT_EQ(nn::float32_matmul_precision(), nn::MatmulPrecision::f32);
  nn::Linear<double> lin(9, 4, false, 5);
  std::vector<double> x(18);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.1 + 0.37 * static_cast<double>(i);
  std::vector<double> y(8);
  {
    const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
    EXPECT_EQ(nn::float32_matmul_precision(), nn::MatmulPrecision::bf16);
    lin.forward(x.data(), 2, 9, y.data(), 4);
  }
  EXPECT_EQ(nn::float32_matmul_precision(), nn::MatmulPrecision::f32);
  for (std::int64_t m = 0; m < 2; ++m)
    for (std::int64_t o = 0; o < 4; ++o) {
      double ref = 0;
      for (std::int64_t i = 0; i < 9; ++i) ref += x[m * 9 + i] * lin.weight()[o * 9 + i];
      EXPECT_NEAR(y[m * 4 + o], ref, 1e-12);
    }
}

TEST(LinearBf16, MultiheadAttentionFollowsTheSetting) {
  SKIP_WITHOUT_DNNL();
  nn::MhaConfig c;
  c.embed_dim = 64;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.batch_first = true;
  c.seed = 3;
  nn::MultiheadAttention<float> mha(c);
  auto x = normal(2 * 9 * 64, 31);
  const TensorView xv(x.data(), DType::f32, {2, 9, 64});
  const Tensor ref = mha.forward(xv, xv, xv).out;
  Tensor low;
  {
    const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
    low = mha.forward(xv, xv, xv).out;
  }
  const float* a = ref.ptr<float>();
  const float* b = low.ptr<float>();
  double diff = 0, mag = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    mag = std::max(mag, static_cast<double>(std::abs(a[i])));
  }
  EXPECT_GT(diff, 0.0);         // the projections ran in bf16 ...
  EXPECT_LE(diff, 2e-2 * mag);  // ... and stay close to fp32
}

TEST(LinearBf16, RowRoundingEqualsTheScalarConversion) {
  // Ties both ways, NaN (stays a quiet NaN), ±Inf, the largest float (rounds to Inf), denormals.
  std::vector<float> v = {1.0f, -2.5f, std::bit_cast<float>(0x3F808000u), std::bit_cast<float>(0x3F818000u),
                          std::bit_cast<float>(0x7FC00001u), std::bit_cast<float>(0x7F800001u), INFINITY, -INFINITY,
                          3.4028235e38f, 1e-40f, -0.0f};
  const auto r = normal(84000, 41);
  v.insert(v.end(), r.begin(), r.end());
  const std::int64_t rows = static_cast<std::int64_t>(v.size()) / 11, cols = 11;  // 7637 rows: ≥ 2^16 elements, the threaded branch
  // Every ISA's loop (round_bf16_<isa>.cpp), picked by the cpu backend's ISA setting, on full rows
  // and on a short strided block (a vector loop's remainder).
  for (const std::string& isa : test::supported_isas()) {
    test::IsaScope scope(isa);
    SCOPED_TRACE(isa);
    std::vector<std::uint16_t> out(static_cast<std::size_t>(rows * (cols + 1)), 0xABCD);
    nn::detail::round_rows_to_bf16(v.data(), rows, cols, cols, out.data(), cols + 1);
    for (std::int64_t i = 0; i < rows; ++i) {
      for (std::int64_t j = 0; j < cols; ++j)
        ASSERT_EQ(out[i * (cols + 1) + j], f32_to_bf16(v[i * cols + j])) << i << "," << j;
      ASSERT_EQ(out[i * (cols + 1) + cols], 0xABCD);
    }
    std::vector<std::uint16_t> wide(static_cast<std::size_t>(3 * 40), 0xABCD);
    nn::detail::round_rows_to_bf16(v.data(), 3, 37, 41, wide.data(), 40);
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t j = 0; j < 40; ++j)
        ASSERT_EQ(wide[i * 40 + j], j < 37 ? f32_to_bf16(v[i * 41 + j]) : 0xABCD) << i << "," << j;
  }
}

TEST(LinearBf16, PrecisionNames) {
  EXPECT_EQ(nn::matmul_precision_from_string("bf16"), nn::MatmulPrecision::bf16);
  EXPECT_EQ(nn::matmul_precision_from_string("f32"), nn::MatmulPrecision::f32);
  EXPECT_STREQ(nn::matmul_precision_name(nn::MatmulPrecision::bf16), "bf16");
  try {
    nn::matmul_precision_from_string("fp8", "--precision");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "--precision");
    EXPECT_NE(std::string(e.what()).find("\"fp8\""), std::string::npos) << e.what();
  }
  if (!nn::bf16_matmul_available()) {
    EXPECT_THROW(nn::set_float32_matmul_precision(nn::MatmulPrecision::bf16), Error);
  }
}

}  // namespace
}  // namespace attn::test
