// Element-wise row passes of the BERT encoder (rows.hpp, docs/embeddings.md).

#include "models/rows.hpp"

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <vector>

namespace attn::models::detail {
namespace {

constexpr float kInvSqrt2 = static_cast<float>(std::numbers::sqrt2 / 2);

#if defined(__x86_64__) && defined(__GLIBC__)
// glibc's libmvec (vector ABI names: 'e' = AVX-512 with 16 floats, 'd' = AVX2 with 8 floats).
extern "C" __attribute__((target("avx512f"))) __m512 _ZGVeN16v_erfcf(__m512);
extern "C" __attribute__((target("avx2,fma"))) __m256 _ZGVdN8v_erfcf(__m256);

__attribute__((target("avx512f"))) void gelu_avx512(float* a, std::int64_t M, std::int64_t N) {
  const __m512 half = _mm512_set1_ps(0.5f), k = _mm512_set1_ps(-kInvSqrt2);
  for (std::int64_t m = 0; m < M; ++m) {
    float* row = a + m * N;
    std::int64_t n = 0;
    for (; n + 16 <= N; n += 16) {
      const __m512 z = _mm512_loadu_ps(row + n);
      const __m512 e = _ZGVeN16v_erfcf(_mm512_mul_ps(z, k));
      _mm512_storeu_ps(row + n, _mm512_mul_ps(_mm512_mul_ps(half, z), e));
    }
    for (; n < N; ++n) {
      const float z = row[n];
      row[n] = 0.5f * z * std::erfc(-z * kInvSqrt2);
    }
  }
}

__attribute__((target("avx2,fma"))) void gelu_avx2(float* a, std::int64_t M, std::int64_t N) {
  const __m256 half = _mm256_set1_ps(0.5f), k = _mm256_set1_ps(-kInvSqrt2);
  for (std::int64_t m = 0; m < M; ++m) {
    float* row = a + m * N;
    std::int64_t n = 0;
    for (; n + 8 <= N; n += 8) {
      const __m256 z = _mm256_loadu_ps(row + n);
      const __m256 e = _ZGVdN8v_erfcf(_mm256_mul_ps(z, k));
      _mm256_storeu_ps(row + n, _mm256_mul_ps(_mm256_mul_ps(half, z), e));
    }
    for (; n < N; ++n) {
      const float z = row[n];
      row[n] = 0.5f * z * std::erfc(-z * kInvSqrt2);
    }
  }
}
#endif

void gelu_scalar(float* a, std::int64_t M, std::int64_t N) {
  for (std::int64_t m = 0; m < M; ++m) {
    float* row = a + m * N;
    for (std::int64_t n = 0; n < N; ++n) {
      const float z = row[n];
      row[n] = 0.5f * z * std::erfc(-z * kInvSqrt2);
    }
  }
}

enum class Path { avx512, avx2, scalar };

Path path() {
#if defined(__x86_64__) && defined(__GLIBC__)
  static const Path p = __builtin_cpu_supports("avx512f")                                 ? Path::avx512
                        : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Path::avx2
                                                                                          : Path::scalar;
  return p;
#else
  return Path::scalar;
#endif
}

}  // namespace

const char* gelu_path() {
  switch (path()) {
    case Path::avx512: return "avx512 libmvec";
    case Path::avx2: return "avx2 libmvec";
    case Path::scalar: return "scalar";
  }
  return "scalar";
}

void fill_rows(float* y, const float* b, const float* r, std::int64_t M, std::int64_t N) {
  for (std::int64_t m = 0; m < M; ++m) {
    float* row = y + m * N;
    if (r) {
      const float* rm = r + m * N;
#pragma omp simd
      for (std::int64_t n = 0; n < N; ++n) row[n] = rm[n] + b[n];
    } else {
      std::memcpy(row, b, static_cast<std::size_t>(N) * sizeof(float));
    }
  }
}

void gelu(float* a, std::int64_t M, std::int64_t N) {
  switch (path()) {
#if defined(__x86_64__) && defined(__GLIBC__)
    case Path::avx512: gelu_avx512(a, M, N); return;
    case Path::avx2: gelu_avx2(a, M, N); return;
#endif
    default: gelu_scalar(a, M, N); return;
  }
}

void add_layer_norm(const float* a, const float* b, const float* r, const float* w, const float* beta, double eps,
                    std::int64_t M, std::int64_t N, float* y) {
  std::vector<float> s(static_cast<std::size_t>(N));
  float* t = s.data();
  for (std::int64_t m = 0; m < M; ++m) {
    const float* am = a + m * N;
    for (std::int64_t n = 0; n < N; ++n) t[n] = am[n];
    if (b)
      for (std::int64_t n = 0; n < N; ++n) t[n] += b[n];
    if (r)
      for (std::int64_t n = 0; n < N; ++n) t[n] += r[m * N + n];
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t n = 0; n < N; ++n) sum += t[n];
    const float mean = sum / static_cast<float>(N);
    float var = 0;
#pragma omp simd reduction(+ : var)
    for (std::int64_t n = 0; n < N; ++n) {
      const float d = t[n] - mean;
      var += d * d;
    }
    const float rstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) / static_cast<double>(N) + eps));
    float* ym = y + m * N;
#pragma omp simd
    for (std::int64_t n = 0; n < N; ++n) ym[n] = (t[n] - mean) * rstd * w[n] + beta[n];
  }
}

}  // namespace attn::models::detail
