// Element-wise row passes of the BERT encoder (rows.hpp, docs/embeddings.md).

#include "models/rows.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "nn/activation_rows.hpp"

namespace attn::models::detail {

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
