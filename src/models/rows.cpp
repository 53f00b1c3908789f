// Element-wise row passes of the BERT encoder (rows.hpp, docs/embeddings.md).

// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "models/rows.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "nn/activation_rows.hpp"
#include "nn/gemm_bf16.hpp"

namespace attn::models::detail {
namespace {
#if defined(__x86_64__)
// bf16 rounding of nn::detail::round_rows_to_bf16 on 16 lanes: (bits + 0x7FFF + lsb) >> 16, NaN -> quiet.
__attribute__((target("avx512f"))) inline __m256i round16_bf16(__m512 x) {
  const __m512i bias = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1), abs_mask = _mm512_set1_epi32(0x7FFFFFFF),
                inf = _mm512_set1_epi32(0x7F800000), quiet = _mm512_set1_epi32(0x0040);
  const __m512i b = _mm512_castps_si512(x);
  const __m512i hi = _mm512_srli_epi32(b, 16);
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, bias), _mm512_and_si512(hi, one)), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, abs_mask), inf);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
  return _mm512_cvtepi32_epi16(r);
}

__attribute__((target("avx512f"))) void to_bf16_avx512(const float* src, std::int64_t n, std::uint16_t* dst) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), round16_bf16(_mm512_loadu_ps(src + i)));
  if (i < n) nn::detail::round_rows_to_bf16(src + i, 1, n - i, n - i, dst + i, n - i);
}

// add_layer_norm on 16 lanes, for rows of N = 64·k + 16·j: the same three passes (sum of
// t = a + b + r, sum of (t − mean)², (t − mean)·rstd·w + beta) with four vector partial sums (then
// their lanes), the bf16 rows rounded from the output vectors.
__attribute__((target("avx512f"))) inline float sum4(__m512 s0, __m512 s1, __m512 s2, __m512 s3) {
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
// t[n .. n + 16) = a + b + r there (b, r may be null), returned.
__attribute__((target("avx512f"))) inline __m512 ln_term(const float* am, const float* b, const float* rm, float* t,
                                                         std::int64_t n) {
  __m512 v = _mm512_loadu_ps(am + n);
  if (b) v = _mm512_add_ps(v, _mm512_loadu_ps(b + n));
  if (rm) v = _mm512_add_ps(v, _mm512_loadu_ps(rm + n));
  _mm512_storeu_ps(t + n, v);
  return v;
}
// acc + (t[n .. n + 16) − mean)²
__attribute__((target("avx512f"))) inline __m512 ln_dev2(const float* t, std::int64_t n, __m512 vm, __m512 acc) {
  const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(t + n), vm);
  return _mm512_fmadd_ps(d, d, acc);
}

__attribute__((target("avx512f"))) void add_layer_norm_avx512(const float* a, const float* b, const float* r,
                                                              const float* w, const float* beta, double eps,
                                                              std::int64_t M, std::int64_t N, float* y,
                                                              std::uint16_t* yb, float* t) {
  for (std::int64_t m = 0; m < M; ++m) {
    const float* am = a + m * N;
    const float* rm = r ? r + m * N : nullptr;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    std::int64_t n = 0;
    for (; n + 64 <= N; n += 64) {
      s0 = _mm512_add_ps(s0, ln_term(am, b, rm, t, n));
      s1 = _mm512_add_ps(s1, ln_term(am, b, rm, t, n + 16));
      s2 = _mm512_add_ps(s2, ln_term(am, b, rm, t, n + 32));
      s3 = _mm512_add_ps(s3, ln_term(am, b, rm, t, n + 48));
    }
    for (; n < N; n += 16) s0 = _mm512_add_ps(s0, ln_term(am, b, rm, t, n));
    const __m512 vm = _mm512_set1_ps(sum4(s0, s1, s2, s3) / static_cast<float>(N));
    s0 = s1 = s2 = s3 = _mm512_setzero_ps();
    for (n = 0; n + 64 <= N; n += 64) {
      s0 = ln_dev2(t, n, vm, s0);
      s1 = ln_dev2(t, n + 16, vm, s1);
      s2 = ln_dev2(t, n + 32, vm, s2);
      s3 = ln_dev2(t, n + 48, vm, s3);
    }
    for (; n < N; n += 16) s0 = ln_dev2(t, n, vm, s0);
    const float var = sum4(s0, s1, s2, s3);
    const __m512 rstd =
        _mm512_set1_ps(static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) / static_cast<double>(N) + eps)));
    float* ym = y + m * N;
    std::uint16_t* ybm = yb ? yb + m * N : nullptr;
    for (n = 0; n < N; n += 16) {
      const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(t + n), vm), rstd);
      const __m512 o = _mm512_fmadd_ps(d, _mm512_loadu_ps(w + n), _mm512_loadu_ps(beta + n));
      _mm512_storeu_ps(ym + n, o);
      if (ybm) _mm256_storeu_si256(reinterpret_cast<__m256i*>(ybm + n), round16_bf16(o));
    }
  }
}
#endif
}  // namespace

void to_bf16(const float* src, std::int64_t n, std::uint16_t* dst) {
#if defined(__x86_64__)
  if (nn::detail::elt_isa() == nn::detail::EltIsa::avx512) {
    to_bf16_avx512(src, n, dst);
    return;
  }
#endif
  nn::detail::round_rows_to_bf16(src, 1, n, n, dst, n);
}

const char* gelu_path() {
  switch (nn::detail::elt_isa()) {
    case nn::detail::EltIsa::avx512: return "avx512 libmvec";
    case nn::detail::EltIsa::avx2: return "avx2 libmvec";
    case nn::detail::EltIsa::scalar: return "scalar";
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
  nn::detail::activation_forward(nn::Activation::gelu, a, a, M * N);
}

void add_layer_norm(const float* a, const float* b, const float* r, const float* w, const float* beta, double eps,
                    std::int64_t M, std::int64_t N, float* y, std::uint16_t* yb, nn::detail::EltIsa isa) {
  std::vector<float> s(static_cast<std::size_t>(N));
  float* t = s.data();
#if defined(__x86_64__)
  if (isa == nn::detail::EltIsa::avx512 && N % 16 == 0) {
    add_layer_norm_avx512(a, b, r, w, beta, eps, M, N, y, yb, t);
    return;
  }
#endif
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
    if (yb) to_bf16(ym, N, yb + m * N);
  }
}

}  // namespace attn::models::detail
