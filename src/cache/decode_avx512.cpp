// The decode chunk kernel for AVX-512 (F, BW, DQ, VL).
#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "cache/decode_includes.hpp"

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512.hpp"
#include "cache/decode_kernel.hpp"
namespace attn::kv {
namespace {
struct I8Avx512 {
  // 16 int8 → 16 floats.
  static __m512 load_i8(const std::int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
};
void chunk(const DecodePlan& pl, const DecodeItem& it, float* acc, cpu::SoftmaxState* st, DecodeScratch& w) {
  DecodeKernel<cpu::isa::Avx512, I8Avx512>::run(pl, it, acc, st, w);
}
}  // namespace
extern const DecodeKernels kDecodeAvx512{"avx512", chunk};
}  // namespace attn::kv
#include "cpu/isa/isa_end.hpp"
#endif
