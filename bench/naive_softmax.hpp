#pragma once
// Row passes for the naive BLAS attention baseline, vectorised with attn's own exp (the same 2-ulp
// exp the cpu backend uses): the naive entry of the ISA table's active entry (cpu/isa/kernels.hpp,
// src/cpu/naive_rows_kernel.hpp), so the baseline runs at the width of the kernel it is compared with.

#include <cstdint>

namespace attn::bench {

/// In place over `rows` rows of `s` (leading dimension `ld`): row i keeps columns [0, hi_i) with
/// hi_i = cols, or min(cols, i + causal_offset + 1) when causal_offset >= 0 (bottom-right causal:
/// offset Nk - Nq); p = exp(s - max) / sum over them, 0 elsewhere; a row with no column is all 0.
using SoftmaxRowsFn = void (*)(float* s, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                               std::int64_t causal_offset);

/// The active ISA's implementation (cpuid, or ATTN_ISA), and the ISA's name.
SoftmaxRowsFn best_softmax_rows(const char** name = nullptr);

/// The row passes of the naive backward, same ISA as the softmax:
/// delta(delta, dout, out, rows, cols): delta[i] = sum_j dout[i, j]·out[i, j] (leading dim cols);
/// ds(dp, p, delta, rows, cols, ld): dp[i, j] = p[i, j]·(dp[i, j] − delta[i]) in place (dS).
struct BwdRowFns {
  void (*delta)(float* delta, const float* dout, const float* out, std::int64_t rows, std::int64_t cols);
  void (*ds)(float* dp, const float* p, const float* delta, std::int64_t rows, std::int64_t cols, std::int64_t ld);
};
BwdRowFns best_bwd_rows();

}  // namespace attn::bench
