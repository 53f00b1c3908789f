#pragma once
// The fp64 reference of the bf16 matmul tests (tests/nn/linear_bf16_test.cpp,
// tests/nn/weight_cache_test.cpp, tests/models/bf16_matmul_test.cpp): a GEMM result against the
// fp64 sum of the bf16-rounded operands (rounded here, by the test's own round-to-nearest-even),
// relative to the magnitude sum, and against the unrounded operands (to see that they were
// rounded at all).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "attn/nn/matmul_precision.hpp"

namespace attn::test {

/// bf16(x) as a double: round to nearest even on the top 16 bits (inputs here are finite).
inline double bf16_rounded(float x) {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t r = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  return static_cast<double>(std::bit_cast<float>(r));
}

/// Worst errors over C [M, N]: `rounded` = max |got − (c0 + Σ_k bf16(a)·bf16(b))| / (|c0| +
/// Σ_k |bf16(a)·bf16(b)|), `unrounded` = the same against Σ_k a·b of the fp32 operands.
struct Bf16GemmError {
  double rounded = 0, unrounded = 0;
};

/// a(m, k), b(k, n), c0(m, n) (what C held or its bias) and got(m, n) are callables returning the
/// operands' fp32 values, so one reference serves every layout and transposition.
template <class A, class B, class C0, class Got>
Bf16GemmError bf16_gemm_error(std::int64_t M, std::int64_t N, std::int64_t K, A a, B b, C0 c0, Got got) {
  Bf16GemmError e;
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      const double init = c0(m, n);
      double ref = init, plain = init, mag = std::abs(init);
      for (std::int64_t k = 0; k < K; ++k) {
        const float av = a(m, k), bv = b(k, n);
        const double p = bf16_rounded(av) * bf16_rounded(bv);
        ref += p;
        plain += static_cast<double>(av) * bv;
        mag += std::abs(p);
      }
      const double g = got(m, n);
      e.rounded = std::max(e.rounded, std::abs(g - ref) / (mag + 1e-30));
      e.unrounded = std::max(e.unrounded, std::abs(g - plain) / (mag + 1e-30));
    }
  return e;
}

/// n values of N(0, 1) from `seed`.
inline std::vector<float> normal(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace attn::test

#define SKIP_WITHOUT_DNNL() \
  if (!::attn::nn::bf16_matmul_available()) GTEST_SKIP() << "libattn built without oneDNN: no bf16 matmuls"
