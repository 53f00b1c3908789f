// round_bf16_kernel.hpp compiled for AVX2 (8 lanes).
#if ATTN_ISA_AVX2
#include <immintrin.h>
#include <omp.h>

#include <bit>
#include <cstdint>

#define ATTN_ISA_TARGET "avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx2.hpp"
#include "nn/round_bf16_kernel.hpp"  // after the region opens: its template gets the target
namespace attn::nn::detail {
extern const RoundRowsFn kRoundBf16Avx2 = RoundBf16<cpu::isa::Avx2>::rows;
}  // namespace attn::nn::detail
#include "cpu/isa/isa_end.hpp"
#endif
