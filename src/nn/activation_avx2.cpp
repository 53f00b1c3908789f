// The activation row passes (activation_rows.hpp) at 8 fp32 lanes on AVX2 + FMA, erfc and exp
// from glibc's vector libm (libmvec's AVX2 variants, vector ABI letter 'd').
#include <cstdint>  // first: it defines __GLIBC__ for the guard

#if defined(ATTN_ISA_AVX2) && defined(__GLIBC__)
#include <immintrin.h>

#include <numbers>

#include "attn/nn/activation.hpp"
#include "nn/activation_rows.hpp"

#define ATTN_ISA_TARGET "avx2,fma"
#include "cpu/isa/isa_begin.hpp"

extern "C" __m256 _ZGVdN8v_erfcf(__m256);
extern "C" __m256 _ZGVdN8v_expf(__m256);

namespace attn::nn::detail {
namespace {

struct EltAvx2 {
  using T = float;
  using R = __m256;
  static constexpr int W = 8;
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R x) { _mm256_storeu_ps(p, x); }
  static R set(double x) { return _mm256_set1_ps(static_cast<float>(x)); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R erfc(R a) { return _ZGVdN8v_erfcf(a); }
  static R exp(R a) { return _ZGVdN8v_expf(a); }
  static R if_zero(R c, R y, R x) { return _mm256_blendv_ps(x, y, _mm256_cmp_ps(c, _mm256_setzero_ps(), _CMP_EQ_OQ)); }
  static R if_pos(R a, R y, R x) { return _mm256_blendv_ps(x, y, _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ)); }
};

}  // namespace
}  // namespace attn::nn::detail

#include "nn/activation_rows_kernel.hpp"

namespace attn::nn::detail {
extern const EltKernels<float> kEltAvx2 = EltRows<EltAvx2>::kernels();
}  // namespace attn::nn::detail

#include "cpu/isa/isa_end.hpp"
#endif
