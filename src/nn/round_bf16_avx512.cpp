// round_bf16_kernel.hpp compiled for AVX-512 (16 lanes). The same loop built standalone at -O3, one
// thread of the Xeon of docs/nn.md, 2048 x 2048 elements, interleaved medians of 15: 1.50 ms
// against 3.38 ms for the baseline (SSE2) build.
#if ATTN_ISA_AVX512
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <omp.h>

#include <bit>
#include <cstdint>

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512.hpp"
#include "nn/round_bf16_kernel.hpp"  // after the region opens: its template gets the target
namespace attn::nn::detail {
extern const RoundRowsFn kRoundBf16Avx512 = RoundBf16<cpu::isa::Avx512>::rows;
}  // namespace attn::nn::detail
#include "cpu/isa/isa_end.hpp"
#endif
