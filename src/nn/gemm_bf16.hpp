#pragma once
// bf16 GEMM with fp32 accumulation for the nn modules (docs/nn.md), on oneDNN's matmul:
//   C [M, N] (fp32, row stride ldc) = op(A)·op(B) + beta·C,   beta ∈ {0, 1}
// A, B bf16 bit patterns (uint16), row-major with row strides lda/ldb; op = transpose when asked.
// Built only with oneDNN (ATTN_HAVE_DNNL); callers check nn::bf16_matmul_available() first.

#include <cstdint>

namespace attn::nn::detail {

void gemm_bf16(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
               std::int64_t lda, const std::uint16_t* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc);

/// dst[i·ld_dst + j] = bf16(src[i·ld_src + j]) for i < rows, j < cols (round to nearest even).
void round_rows_to_bf16(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld_src,
                        std::uint16_t* dst, std::int64_t ld_dst);

}  // namespace attn::nn::detail
