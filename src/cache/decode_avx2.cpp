// The decode chunk kernel for AVX2 + FMA.
#if defined(__x86_64__)
#include <immintrin.h>

#include "cache/decode_includes.hpp"

#define ATTN_ISA_TARGET "avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx2.hpp"
#include "cache/decode_kernel.hpp"
namespace attn::kv {
namespace {
struct I8Avx2 {
  // 8 int8 → 8 floats.
  static __m256 load_i8(const std::int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
};
void chunk(const DecodePlan& pl, const DecodeItem& it, float* acc, cpu::SoftmaxState* st, DecodeScratch& w) {
  DecodeKernel<cpu::isa::Avx2, I8Avx2>::run(pl, it, acc, st, w);
}
}  // namespace
extern const DecodeKernels kDecodeAvx2{"avx2", chunk};
}  // namespace attn::kv
#include "cpu/isa/isa_end.hpp"
#endif
