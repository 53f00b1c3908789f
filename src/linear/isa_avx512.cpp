// The linear-attention kernels (chunk_kernel.hpp, recurrent_kernel.hpp) for AVX-512 (F, BW, DQ, VL).
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "linear/kernel_includes.hpp"

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512.hpp"
#include "linear/chunk_kernel.hpp"
#include "linear/recurrent_kernel.hpp"
namespace attn::linear {
namespace {
// The AVX-512 traits plus a 16 × 16 register transpose and a cheaper exp for x ≤ 0 (chunk_kernel.hpp
// uses them when present).
struct LinAvx512 : cpu::isa::Avx512 {
  // e^x for x ≤ 0 (elu's negative half): the traits' range reduction, then a degree-5 polynomial
  // for e^r on |r| ≤ ln2/2 (coefficients fitted here for relative error: ≤ 1.1e-7, a few ulp).
  // No overflow to guard; below kExpMin the result is e^kExpMin ≈ 1.2e-38 instead of 0; NaN kept
  // (max_ps returns its second operand when either is NaN).
  static __m512 exp_nonpositive(__m512 x) {
    using namespace cpu::isa;
    x = _mm512_max_ps(_mm512_set1_ps(kExpMin), x);
    const __m512 n =
        _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    __m512 p = _mm512_set1_ps(8.312525227665901e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1890114545822144e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6667114198207855e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.99992311000824e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
  }
  // Four stages of vpermt2ps, stage b swapping the off-diagonal b × b blocks of every 2b × 2b block.
  static void transpose16(const float* src, std::int64_t lds, float* dst, std::int64_t ldd) {
    __m512 r[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int b = 8; b >= 1; b /= 2) {
      alignas(64) int lo[16], hi[16];
      for (int c = 0; c < 16; ++c) {
        lo[c] = (c & b) == 0 ? c : 16 + c - b;
        hi[c] = (c & b) == 0 ? c + b : 16 + c;
      }
      const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
      for (int i = 0; i < 16; ++i) {
        if (i & b) continue;
        const __m512 top = r[i], bottom = r[i + b];
        r[i] = _mm512_permutex2var_ps(top, ilo, bottom);
        r[i + b] = _mm512_permutex2var_ps(top, ihi, bottom);
      }
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
  }
};
}  // namespace
extern const LinearKernels kLinearAvx512Kernels{cpu::isa::Avx512::kName, ChunkKernel<LinAvx512>::forward_task,
                                                ChunkKernel<LinAvx512>::backward_task,
                                                RecurrentKernel<LinAvx512>::forward_task};
}  // namespace attn::linear
#include "cpu/isa/isa_end.hpp"
