#pragma once
// Row-major GEMM on OpenBLAS for the nn modules: C = alpha·op(A)·op(B) + beta·C, sgemm for float,
// dgemm for double (the f64 modules exist for gradient checks). Sizes of 0 do nothing.

#include <cblas.h>

#include <cstdint>

#include "attn/tensor.hpp"

namespace attn::nn::detail {

template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // C = beta·C
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  if (M == 1 && !trans_a) {
    // One row (a decoding step): a GEMV reads op(B) once in place, where sgemm would first pack
    // all of it (docs/generation.md measures the difference). y = op(B)ᵀ·a as a row of C.
    const auto n = static_cast<int>(N), k = static_cast<int>(K);
    if (beta == T(0))  // C may be uninitialised memory: never scale it (NaN · 0 is NaN)
      for (std::int64_t j = 0; j < N; ++j) C[j] = T(0);
    if constexpr (sizeof(T) == 4) {
      if (trans_b)  // B [N, K]: C = B·a
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, B, static_cast<int>(ldb), A, 1, beta, C, 1);
      else  // B [K, N]: C = Bᵀ·a
        cblas_sgemv(CblasRowMajor, CblasTrans, k, n, alpha, B, static_cast<int>(ldb), A, 1, beta, C, 1);
    } else {
      if (trans_b)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, B, static_cast<int>(ldb), A, 1, beta, C, 1);
      else
        cblas_dgemv(CblasRowMajor, CblasTrans, k, n, alpha, B, static_cast<int>(ldb), A, 1, beta, C, 1);
    }
    return;
  }
  const auto ta = trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = trans_b ? CblasTrans : CblasNoTrans;
  const auto m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  if constexpr (sizeof(T) == 4)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                static_cast<int>(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                static_cast<int>(ldc));
}

/// The attn dtype of T.
template <class T>
constexpr DType dtype_of() {
  return sizeof(T) == 4 ? DType::f32 : DType::f64;
}

}  // namespace attn::nn::detail
