#pragma once
// The element-wise row passes of the BERT encoder (docs/embeddings.md), each one pass over rows
// that a GEMM just wrote, so that the rows are still in cache:
//   fill_rows       y[m, :] = b (+ r[m, :]): the bias (and residual) a GEMM then accumulates onto
//   gelu            a[m, :] = gelu(a[m, :]), gelu(z) = ½·z·erfc(−z/√2) (exact, as nn::Activation::gelu)
//   add_layer_norm  y[m, :] = LayerNorm(a[m, :] + b + r[m, :]) with weight w, bias beta, eps
//                   (biased variance by two passes over the row, as torch's LayerNorm); when yb is
//                   given, also its bf16 rounding (the next bf16 GEMM's input, bf16 mode);
//                   16 lanes with vector partial sums on AVX-512
//   to_bf16         dst[i] = bf16(src[i]) for i < n: round to nearest even, NaN quiet, bit for bit
//                   nn::detail::round_rows_to_bf16 (16 lanes at a time on AVX-512)
// gelu is nn::FeedForward's own pass (src/nn/activation_rows.hpp: erfc from glibc's vector libm,
// 16 or 8 lanes, where the CPU has AVX-512 or AVX2, std::erfc elsewhere). Inputs and outputs are
// row-major with row stride = the row length.

#include <cstdint>

#include "nn/activation_rows.hpp"

namespace attn::models::detail {

/// r may be null.
void fill_rows(float* y, const float* b, const float* r, std::int64_t M, std::int64_t N);
void gelu(float* a, std::int64_t M, std::int64_t N);
/// y may be a or r. b (one row, added to every row) and r (a residual [M, N]) may be null. isa
/// avx512 (with N a multiple of 16) runs 16 lanes with vector partial sums, the others the
/// compiler's loops; the bf16 rows are the rounding of y either way.
void add_layer_norm(const float* a, const float* b, const float* r, const float* w, const float* beta, double eps,
                    std::int64_t M, std::int64_t N, float* y, std::uint16_t* yb = nullptr,
                    nn::detail::EltIsa isa = nn::detail::elt_isa());
void to_bf16(const float* src, std::int64_t n, std::uint16_t* dst);
/// Which erfc the gelu pass uses: "avx512 libmvec", "avx2 libmvec" or "scalar".
const char* gelu_path();

}  // namespace attn::models::detail
