// models::detail::Bf16Matmul (src/models/bf16_matmul.hpp): y += bf16(x)·bf16(W)ᵀ with fp32
// accumulation, against fp64 sums of the bf16-rounded operands, for row counts below, at and
// across the primitives' blocks (0, 1, 7, 15, 16, 17, 63, 64, 65, 127, 200; 17, 64, 130 at the
// model's sizes), sizes off the vector
// width, accumulation onto rows that hold a bias, and calls from the threads of an OpenMP team on
// their own rows (as the encoder makes them). Where the build has no oneDNN, or oneDNN no bf16
// kernel for the CPU, construction must be the clear error instead.

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/tensor.hpp"
#include "models/bf16_matmul.hpp"
#include "models/rows.hpp"
#include "nn/bf16_reference.hpp"
#include "nn/gemm_bf16.hpp"

namespace {

using attn::models::detail::Bf16Matmul;
using attn::models::detail::Bf16Scratch;

std::vector<float> random_vector(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

using attn::test::bf16_rounded;

// Whether this build and CPU have a bf16 kernel; when not, the constructor's error is checked here.
bool bf16_runs(std::int64_t N, std::int64_t K) {
  const std::string impl = attn::models::detail::bf16_matmul_probe(N, K);
  const bool ok = attn::nn::bf16_matmul_available() && impl.rfind("ref", 0) != 0 && impl.rfind("none", 0) != 0;
  if (!ok) {
    const std::vector<float> w(static_cast<std::size_t>(N * K), 1.0f);
    try {
      const Bf16Matmul mm(w.data(), N, K);
      ADD_FAILURE() << "no error without a bf16 kernel (" << impl << ")";
    } catch (const attn::Error& e) {
      EXPECT_EQ(e.kind(), attn::ErrorKind::unsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find("precision: bf16"), std::string::npos) << e.what();
    }
  }
  return ok;
}

struct Case {
  std::int64_t N, K;
};

TEST(Bf16Matmul, EqualsFp64SumsOfRoundedOperands) {
  for (const Case c : {Case{72, 24}, Case{40, 24}, Case{24, 40}, Case{33, 17}, Case{384, 384}, Case{96, 1536}}) {
    if (!bf16_runs(c.N, c.K))
      GTEST_SKIP() << "no bf16 matmul kernel: " << attn::models::detail::bf16_matmul_probe(c.N, c.K);
    const std::vector<float> w = random_vector(static_cast<std::size_t>(c.N * c.K), 3);
    const Bf16Matmul mm(w.data(), c.N, c.K);
    EXPECT_FALSE(mm.impl().empty());
    const bool big = c.N * c.K > 10000;  // the model's sizes: fewer row counts (the fp64 sums are slow)
    const std::vector<std::int64_t> rows = big ? std::vector<std::int64_t>{17, 64, 130}
                                               : std::vector<std::int64_t>{0, 1, 7, 15, 16, 17, 63, 64, 65, 127, 200};
    for (const std::int64_t M : rows) {
      const std::vector<float> x = random_vector(static_cast<std::size_t>(std::max<std::int64_t>(M, 1) * c.K), 5);
      const std::vector<float> bias = random_vector(static_cast<std::size_t>(c.N), 7);
      std::vector<std::uint16_t> xb(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) xb[i] = attn::f32_to_bf16(x[i]);
      std::vector<float> y(static_cast<std::size_t>(std::max<std::int64_t>(M, 1) * c.N));
      for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t n = 0; n < c.N; ++n)
          y[static_cast<std::size_t>(m * c.N + n)] = bias[static_cast<std::size_t>(n)];
      Bf16Scratch s;
      mm.accumulate(xb.data(), M, y.data(), s);
      const attn::test::Bf16GemmError err = attn::test::bf16_gemm_error(
          M, c.N, c.K, [&](auto m, auto k) { return x[static_cast<std::size_t>(m * c.K + k)]; },
          [&](auto k, auto n) { return w[static_cast<std::size_t>(n * c.K + k)]; },
          [&](auto, auto n) { return bias[static_cast<std::size_t>(n)]; },
          [&](auto m, auto n) { return y[static_cast<std::size_t>(m * c.N + n)]; });
      const double worst = err.rounded, unrounded_worst = err.unrounded;
      EXPECT_LE(worst, 2e-6) << "N " << c.N << " K " << c.K << " M " << M;  // fp32 accumulation only
      if (M >= 7) {
        EXPECT_GT(unrounded_worst, 1e-4) << "the operands were not rounded to bf16";
      }
    }
  }
}

TEST(Bf16Matmul, EachThreadOfATeamOnItsOwnRows) {
  constexpr std::int64_t N = 72, K = 24, T = 331;
  if (!bf16_runs(N, K)) GTEST_SKIP() << "no bf16 matmul kernel";
  const std::vector<float> w = random_vector(N * K, 11), x = random_vector(T * K, 13);
  std::vector<std::uint16_t> xb(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) xb[i] = attn::f32_to_bf16(x[i]);
  const Bf16Matmul mm(w.data(), N, K);
  std::vector<float> one(T * N, 0.5f);
  Bf16Scratch s;
  mm.accumulate(xb.data(), T, one.data(), s);
  for (int nt : {2, 3}) {
    std::vector<float> y(T * N, 0.5f);
    std::vector<Bf16Scratch> scratch(static_cast<std::size_t>(nt));
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num();
      const std::int64_t r0 = T * t / nt, r1 = T * (t + 1) / nt;
      mm.accumulate(xb.data() + r0 * K, r1 - r0, y.data() + r0 * N, scratch[static_cast<std::size_t>(t)]);
    }
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i) worst = std::max(worst, double(std::abs(y[i] - one[i])));
    EXPECT_LE(worst, 1e-5) << nt << " threads";
  }
}

// The fused epilogues (bias, accumulation onto a residual, exact gelu, bf16 output) against their
// composition in fp64 from the bf16-rounded operands: ref = Σ bf16(x)·bf16(w) + b, then + y₀, or
// gelu(·) = ½·z·erfc(−z/√2), or bf16 rounding (at most one bf16 step, 2⁻⁸ relative, off). Row counts
// below, at and across the blocks (the remainder through the padded scratch rows); the row after
// the last stays untouched.
TEST(Bf16Matmul, EpiloguesEqualTheirComposition) {
  using attn::models::detail::Bf16Epilogue;
  for (const Case c : {Case{72, 24}, Case{33, 17}, Case{96, 384}}) {
    if (!bf16_runs(c.N, c.K)) GTEST_SKIP() << "no bf16 matmul kernel";
    const std::vector<float> w = random_vector(static_cast<std::size_t>(c.N * c.K), 19),
                             bias = random_vector(static_cast<std::size_t>(c.N), 23);
    for (const Bf16Epilogue e :
         {Bf16Epilogue::bias_accumulate, Bf16Epilogue::bias_to_bf16, Bf16Epilogue::bias_gelu_to_bf16}) {
      const Bf16Matmul mm(w.data(), c.N, c.K, e, bias.data());
      EXPECT_EQ(mm.epilogue(), e);
      const bool out16 = e != Bf16Epilogue::bias_accumulate;
      for (const std::int64_t M : {0, 1, 7, 16, 17, 64, 65, 130}) {
        const std::size_t rows = static_cast<std::size_t>(M) + 1;  // + the row that must stay untouched
        const std::vector<float> x = random_vector(rows * static_cast<std::size_t>(c.K), 29),
                                 y0 = random_vector(rows * static_cast<std::size_t>(c.N), 31);
        std::vector<std::uint16_t> xb(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) xb[i] = attn::f32_to_bf16(x[i]);
        std::vector<float> y = y0;
        std::vector<std::uint16_t> yb(y0.size(), 0xAAAA);
        Bf16Scratch s;
        if (out16)
          mm.to_bf16(xb.data(), M, yb.data(), s);
        else
          mm.accumulate(xb.data(), M, y.data(), s);
        double worst = 0;
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t n = 0; n < c.N; ++n) {
            const std::size_t i = static_cast<std::size_t>(m * c.N + n);
            double z = bias[static_cast<std::size_t>(n)], mag = std::abs(z);
            for (std::int64_t k = 0; k < c.K; ++k) {
              const double p = bf16_rounded(x[static_cast<std::size_t>(m * c.K + k)]) *
                               bf16_rounded(w[static_cast<std::size_t>(n * c.K + k)]);
              z += p;
              mag += std::abs(p);
            }
            double ref = z, tol = 2e-6 * mag;  // fp32 accumulation
            if (e == Bf16Epilogue::bias_accumulate) {
              ref += y0[i];
              tol += 1e-7 * std::abs(y0[i]);
            }
            if (e == Bf16Epilogue::bias_gelu_to_bf16) ref = 0.5 * z * std::erfc(-z / std::sqrt(2.0));
            if (out16) tol += std::ldexp(std::abs(ref), -8) + 1e-6 * std::abs(z);  // one bf16 step; oneDNN's erf
            const double got = out16 ? double(attn::bf16_to_f32(yb[i])) : double(y[i]);
            worst = std::max(worst, std::abs(got - ref) / (tol + 1e-30));
          }
        EXPECT_LE(worst, 1.0) << "epilogue " << static_cast<int>(e) << " N " << c.N << " K " << c.K << " M " << M;
        for (std::int64_t n = 0; n < c.N; ++n) {  // row M untouched
          const std::size_t i = static_cast<std::size_t>(M * c.N + n);
          if (out16)
            ASSERT_EQ(yb[i], 0xAAAA) << "row " << M << " written, M " << M;
          else
            ASSERT_EQ(y[i], y0[i]) << "row " << M << " written, M " << M;
        }
      }
      // The other kind of output, and a bias where there is none or none where there is one, are errors.
      Bf16Scratch s;
      std::vector<float> y(static_cast<std::size_t>(c.N));
      std::vector<std::uint16_t> xb(static_cast<std::size_t>(c.K)), yb(static_cast<std::size_t>(c.N));
      if (out16)
        EXPECT_THROW(mm.accumulate(xb.data(), 1, y.data(), s), attn::Error);
      else
        EXPECT_THROW(mm.to_bf16(xb.data(), 1, yb.data(), s), attn::Error);
      EXPECT_THROW(Bf16Matmul(w.data(), c.N, c.K, e, nullptr), attn::Error);
    }
    EXPECT_THROW(Bf16Matmul(w.data(), c.N, c.K, Bf16Epilogue::accumulate, bias.data()), attn::Error);
  }
}

// The encoder's vector rounding equals nn's scalar one bit for bit: ties to even, NaN, ±inf,
// denormals, the largest finite values (which round to inf), every tail length.
TEST(Bf16Rounding, VectorEqualsScalarBitForBit) {
  std::vector<float> v = random_vector(1000, 17);
  const std::uint32_t specials[] = {0x7FC00001u, 0xFFC00000u, 0x7F800001u, 0x7F800000u, 0xFF800000u,
                                    0x00000001u, 0x80008000u, 0x3F808000u, 0x3F818000u, 0x7F7FFFFFu,
                                    0xFF7FFFFFu, 0x00000000u, 0x80000000u, 0x3F7FFFFFu, 0x00018000u};
  for (std::size_t i = 0; i < std::size(specials); ++i) std::memcpy(&v[i * 37], &specials[i], 4);
  for (std::int64_t n : {0, 1, 15, 16, 17, 33, 1000}) {
    std::vector<std::uint16_t> got(static_cast<std::size_t>(n) + 1, 0xAAAA), want(got);
    attn::models::detail::to_bf16(v.data() + (1000 - n), n, got.data());
    attn::nn::detail::round_rows_to_bf16(v.data() + (1000 - n), 1, n, n, want.data(), n);
    EXPECT_EQ(got, want) << "n " << n;  // the element after the n written stays untouched
  }
}

// The LayerNorm row pass on every element ISA (AVX-512: 16 lanes, vector partial sums) against its
// composition in fp64: t = a + b + r, biased variance, (t − mean)/√(var + eps)·w + beta; the bf16
// rows are the rounding of the fp32 output bit for bit; in place (y = a) gives the same; rows of
// a length off the vector width take the compiler's loops; the row after the last stays untouched.
TEST(LayerNormRows, EveryIsaMatchesFp64Composition) {
  using attn::nn::detail::EltIsa;
  for (const EltIsa isa : attn::nn::detail::elt_isas()) {
    for (const std::int64_t N : {384, 48, 16, 40, 7}) {
      for (const std::int64_t M : {1, 7}) {
        for (int variant = 0; variant < 4; ++variant) {  // bias and residual: neither, b, r, both
          SCOPED_TRACE(std::string(attn::nn::detail::elt_isa_name(isa)) + " N " + std::to_string(N) + " M " +
                       std::to_string(M) + " variant " + std::to_string(variant));
          const auto seed = static_cast<std::uint32_t>(N * 100 + M * 10 + variant);
          std::vector<float> a = random_vector(static_cast<std::size_t>(M * N), seed),
                             r = random_vector(static_cast<std::size_t>(M * N), seed + 1),
                             b = random_vector(static_cast<std::size_t>(N), seed + 2),
                             w = random_vector(static_cast<std::size_t>(N), seed + 3),
                             beta = random_vector(static_cast<std::size_t>(N), seed + 4);
          for (auto& x : a) x = 3.0f + 2.0f * x;  // rows with a mean off zero
          const float* bp = variant & 1 ? b.data() : nullptr;
          const float* rp = variant & 2 ? r.data() : nullptr;
          const double eps = 1e-12;
          std::vector<float> y(static_cast<std::size_t>((M + 1) * N), -7.0f);
          std::vector<std::uint16_t> yb(static_cast<std::size_t>((M + 1) * N), 0xAAAA);
          attn::models::detail::add_layer_norm(a.data(), bp, rp, w.data(), beta.data(), eps, M, N, y.data(), yb.data(),
                                               isa);
          double worst = 0;
          for (std::int64_t m = 0; m < M; ++m) {
            std::vector<double> t(static_cast<std::size_t>(N));
            double mean = 0, var = 0;
            for (std::int64_t n = 0; n < N; ++n) {
              const auto i = static_cast<std::size_t>(m * N + n);
              t[n] = double(a[i]) + (bp ? double(b[n]) : 0.0) + (rp ? double(r[i]) : 0.0);
              mean += t[n];
            }
            mean /= double(N);
            for (std::int64_t n = 0; n < N; ++n) var += (t[n] - mean) * (t[n] - mean);
            const double rstd = 1.0 / std::sqrt(var / double(N) + eps);
            for (std::int64_t n = 0; n < N; ++n) {
              const auto i = static_cast<std::size_t>(m * N + n);
              const double want = (t[n] - mean) * rstd * double(w[n]) + double(beta[n]);
              worst = std::max(worst, std::abs(double(y[i]) - want) / (1.0 + std::abs(want)));
              ASSERT_EQ(yb[i], attn::f32_to_bf16(y[i])) << "element " << i;
            }
          }
          EXPECT_LE(worst, 4e-6);
          for (std::int64_t n = 0; n < N; ++n) {
            EXPECT_EQ(y[static_cast<std::size_t>(M * N + n)], -7.0f);
            EXPECT_EQ(yb[static_cast<std::size_t>(M * N + n)], 0xAAAA);
          }
          // In place: y = a gives the same bits.
          std::vector<float> in = a;
          attn::models::detail::add_layer_norm(in.data(), bp, rp, w.data(), beta.data(), eps, M, N, in.data(), nullptr,
                                               isa);
          EXPECT_TRUE(std::equal(in.begin(), in.end(), y.begin()));
        }
      }
    }
  }
}

}  // namespace
