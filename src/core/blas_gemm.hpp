#pragma once
// Row-major GEMM on OpenBLAS for every part of attn that multiplies matrices outside the attention
// kernels (the nn modules, the cross-attention K/V projection of src/cache): C = alpha·op(A)·op(B) +
// beta·C, sgemm for float, dgemm for double (the f64 modules exist for gradient checks). Sizes of 0
// do nothing.
//
// Threads: every such GEMM runs on attn's one OpenMP team, with OpenBLAS on one thread per call.
// OpenBLAS built on pthreads (Debian's) keeps a second pool whose workers spin after each call and
// take the cores from the OpenMP threads of the SDPA, norms and activations that run between the
// GEMMs: on 2 cores that made decoding 4-5x and small modules 1.5x slower (docs/nn.md, "Threads").
// So a large GEMM is split here into independent blocks of C — row blocks when M is large, column
// blocks otherwise (a decoding step's GEMV) — one OpenBLAS call per thread. Each element of C is
// then computed by the same kernel and K order whatever the thread count.

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>


extern "C" {
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
}

namespace attn::blas {

/// OpenBLAS on one thread for the guard's lifetime (restored after, so that a caller's own OpenBLAS
/// calls keep their setting). Used around code whose OpenMP threads call OpenBLAS.
struct SingleThreadedBlas {
  int saved = openblas_get_num_threads();
  SingleThreadedBlas() {
    if (saved != 1) openblas_set_num_threads(1);
  }
  ~SingleThreadedBlas() {
    if (saved != 1) openblas_set_num_threads(saved);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

/// One OpenBLAS call (whatever its thread setting): C = alpha·op(A)·op(B) + beta·C.
template <class T>
void gemm_call(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
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

/// C = alpha·op(A)·op(B) + beta·C on the calling thread's OpenMP team (see the top of this file).
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Below ~2 MFLOP (the fp64 gradient checks' tiny modules, short decoding steps of small models) a
  // split costs more than it gains.
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  SingleThreadedBlas one_thread;
  if (threads <= 1 || flops < 2e6) {
    gemm_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Row blocks need each thread to pack all of op(B) again, which pays off once every block has a
  // few dozen rows; otherwise split the columns (op(B) is then read once in all). Block edges are
  // multiples of 16 elements (whole cache lines of C and of B's rows).
  constexpr std::int64_t kAlign = 16;
  const bool by_rows = M >= 64 * threads;
  const std::int64_t extent = by_rows ? M : N;
  const std::int64_t block = (extent + threads - 1) / threads;
  const std::int64_t step = std::max<std::int64_t>(kAlign, (block + kAlign - 1) / kAlign * kAlign);
  const std::int64_t pieces = (extent + step - 1) / step;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (std::int64_t p = 0; p < pieces; ++p) {
    const std::int64_t lo = p * step, n = std::min(step, extent - lo);
    if (by_rows)
      gemm_call(trans_a, trans_b, n, N, K, alpha, trans_a ? A + lo : A + lo * lda, lda, B, ldb, beta, C + lo * ldc,
                ldc);
    else
      gemm_call(trans_a, trans_b, M, n, K, alpha, A, lda, trans_b ? B + lo * ldb : B + lo, ldb, beta, C + lo, ldc);
  }
}

}  // namespace attn::blas
