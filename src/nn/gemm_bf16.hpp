#pragma once
// bf16 GEMM with fp32 accumulation for the nn modules (docs/nn.md), on oneDNN's matmul:
//   C [M, N] (fp32, row stride ldc) = op(A)·op(B) (+ bias) + beta·C,   beta ∈ {0, 1}
// A, B bf16 bit patterns (uint16), row-major with row strides lda/ldb; op = transpose when asked;
// bias (optional, fp32 [N]) added to every row in the matmul's own epilogue (no pass over C).
// Built only with oneDNN (ATTN_HAVE_DNNL); callers check nn::bf16_matmul_available() first.

#include <cstddef>
#include <cstdint>

namespace attn::nn::detail {

void gemm_bf16(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
               std::int64_t lda, const std::uint16_t* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc,
               const float* bias = nullptr);

/// A weight operand packed once into the layout oneDNN's kernel reads (its blocked VNNI pairs), for
/// C [M, N] = A·op(W) + beta·C with W bf16 [N, K] (trans_b, the forward x·Wᵀ) or [K, N] (dy·W):
/// `id` names the layout (< 0: oneDNN keeps none for this shape, use gemm_bf16 with W plain),
/// `bytes` its size. Saves the kernel's own copy of a plain W into that layout at every call.
struct PackedLayout {
  int id = -1;
  std::size_t bytes = 0;
};
PackedLayout packed_layout_bf16(bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t lda,
                                float beta, std::int64_t ldc, bool bias = false);
/// W (row-major, row stride ldw; [N, K] when trans_b, else [K, N]) into `layout` at dst (layout.bytes).
void pack_weights_bf16(bool trans_b, std::int64_t N, std::int64_t K, const std::uint16_t* W, std::int64_t ldw,
                       const PackedLayout& layout, std::uint8_t* dst);
/// gemm_bf16 with B packed by pack_weights_bf16 for the same (trans_b, M, N, K, lda, beta, ldc,
/// whether there is a bias).
void gemm_bf16_packed(bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
                      std::int64_t lda, const std::uint8_t* Wp, const PackedLayout& layout, float beta, float* C,
                      std::int64_t ldc, const float* bias = nullptr);

/// dst[i·ld_dst + j] = bf16(src[i·ld_src + j]) for i < rows, j < cols (round to nearest even).
void round_rows_to_bf16(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld_src,
                        std::uint16_t* dst, std::int64_t ld_dst);

}  // namespace attn::nn::detail
