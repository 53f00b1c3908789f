// The activation row passes' dispatch (activation_rows.hpp): the scalar float and double
// instantiations here, the vector ones in activation_avx512.cpp and activation_avx2.cpp.

#include "nn/activation_rows.hpp"

#include <cstdlib>
#include <string_view>

#include "nn/activation_impl.hpp"
#include "nn/activation_rows_kernel.hpp"
#if defined(__x86_64__)
#include "cpu/isa/cpu_features.hpp"
#endif

namespace attn::nn::detail {

#if defined(ATTN_ISA_AVX512) && defined(__GLIBC__)
extern const EltKernels<float> kEltAvx512;
#endif
#if defined(ATTN_ISA_AVX2) && defined(__GLIBC__)
extern const EltKernels<float> kEltAvx2;
#endif

namespace {

constexpr EltKernels<float> kEltScalarF32 = EltRows<ScalarElt<float>>::kernels();
constexpr EltKernels<double> kEltScalarF64 = EltRows<ScalarElt<double>>::kernels();

const EltKernels<float>& kernels(EltIsa isa) {
  switch (isa) {
#if defined(ATTN_ISA_AVX512) && defined(__GLIBC__)
    case EltIsa::avx512: return kEltAvx512;
#endif
#if defined(ATTN_ISA_AVX2) && defined(__GLIBC__)
    case EltIsa::avx2: return kEltAvx2;
#endif
    default: return kEltScalarF32;
  }
}

}  // namespace

const char* elt_isa_name(EltIsa isa) {
  switch (isa) {
    case EltIsa::avx512: return "avx512";
    case EltIsa::avx2: return "avx2";
    case EltIsa::scalar: return "scalar";
  }
  return "scalar";
}

const std::vector<EltIsa>& elt_isas() {
  static const std::vector<EltIsa> isas = [] {
    std::vector<EltIsa> v;
#if defined(ATTN_ISA_AVX512) && defined(__GLIBC__)
    if (cpu::isa::has_avx512_f_bw_dq_vl()) v.push_back(EltIsa::avx512);
#endif
#if defined(ATTN_ISA_AVX2) && defined(__GLIBC__)
    if (cpu::isa::has_avx2_fma_f16c()) v.push_back(EltIsa::avx2);
#endif
    v.push_back(EltIsa::scalar);
    return v;
  }();
  return isas;
}

EltIsa elt_isa() {
  static const EltIsa chosen = [] {
    const std::vector<EltIsa>& all = elt_isas();
    const char* env = std::getenv("ATTN_ISA");
    for (EltIsa isa : all)
      if (env && (isa == EltIsa::avx2 || isa == EltIsa::scalar) && std::string_view(env) == elt_isa_name(isa))
        return isa;
    return all.front();
  }();
  return chosen;
}

void activation_forward(Activation which, const float* a, float* h, std::int64_t n, EltIsa isa) {
  kernels(isa).forward[static_cast<int>(which)](a, h, n);
}
void activation_forward(Activation which, const double* a, double* h, std::int64_t n) {
  kEltScalarF64.forward[static_cast<int>(which)](a, h, n);
}
void activation_backward(Activation which, const float* a, const float* dh, float* da, std::int64_t n, EltIsa isa) {
  kernels(isa).backward[static_cast<int>(which)](a, dh, da, n);
}
void activation_backward(Activation which, const double* a, const double* dh, double* da, std::int64_t n) {
  kEltScalarF64.backward[static_cast<int>(which)](a, dh, da, n);
}
void swiglu_forward(const float* g, const float* u, float* h, std::int64_t n, EltIsa isa) {
  kernels(isa).swiglu_forward(g, u, h, n);
}
void swiglu_forward(const double* g, const double* u, double* h, std::int64_t n) {
  kEltScalarF64.swiglu_forward(g, u, h, n);
}
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, std::int64_t n,
                     EltIsa isa) {
  kernels(isa).swiglu_backward(g, u, dh, dg, du, n);
}
void swiglu_backward(const double* g, const double* u, const double* dh, double* dg, double* du, std::int64_t n) {
  kEltScalarF64.swiglu_backward(g, u, dh, dg, du, n);
}

}  // namespace attn::nn::detail
