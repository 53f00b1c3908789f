// The activation row passes (activation_rows.hpp) at 16 fp32 lanes on AVX-512F, erfc and exp
// from glibc's vector libm (libmvec's AVX-512 variants, vector ABI letter 'e').
#include <cstdint>  // first: it defines __GLIBC__ for the guard

#if defined(ATTN_ISA_AVX512) && defined(__GLIBC__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <numbers>

#include "attn/nn/activation.hpp"
#include "nn/activation_rows.hpp"

#define ATTN_ISA_TARGET "avx512f,avx2,fma"
#include "cpu/isa/isa_begin.hpp"

extern "C" __m512 _ZGVeN16v_erfcf(__m512);
extern "C" __m512 _ZGVeN16v_expf(__m512);

namespace attn::nn::detail {
namespace {

struct EltAvx512 {
  using T = float;
  using R = __m512;
  static constexpr int W = 16;
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R x) { _mm512_storeu_ps(p, x); }
  static R set(double x) { return _mm512_set1_ps(static_cast<float>(x)); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R erfc(R a) { return _ZGVeN16v_erfcf(a); }
  static R exp(R a) { return _ZGVeN16v_expf(a); }
  static R if_zero(R c, R y, R x) { return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(c, _mm512_setzero_ps(), _CMP_EQ_OQ), y); }
  static R if_pos(R a, R y, R x) { return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ), y); }
};

}  // namespace
}  // namespace attn::nn::detail

#include "nn/activation_rows_kernel.hpp"

namespace attn::nn::detail {
extern const EltKernels<float> kEltAvx512 = EltRows<EltAvx512>::kernels();
}  // namespace attn::nn::detail

#include "cpu/isa/isa_end.hpp"
#endif
