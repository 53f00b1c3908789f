#pragma once
// Element-wise activation passes over n contiguous values — the one implementation behind
// nn::FeedForward (feed_forward.cpp) and the BERT encoder's gelu (src/models/rows.cpp). The
// formulas are activation_formulas.hpp's; fp32 runs them on the best vector ISA the CPU has
// (AVX-512: 16 lanes, AVX2: 8; erfc and exp from glibc's vector libm, libmvec) or on the scalar
// traits, fp64 always scalar (the finite-difference path). A tail shorter than a vector runs
// through a padded vector, so every element of one ISA goes through the same instructions.
// ATTN_ISA=avx2 or ATTN_ISA=scalar (the ISA table's override, docs/architecture.md §4) forces
// those here too; any other value keeps the best.

#include <cstdint>
#include <vector>

#include "attn/nn/activation.hpp"

namespace attn::nn::detail {

enum class EltIsa { avx512, avx2, scalar };
const char* elt_isa_name(EltIsa isa);
/// Compiled in and supported by this CPU, best first; scalar is always last.
const std::vector<EltIsa>& elt_isas();
/// The one used by default (chosen once: the best, or ATTN_ISA's).
EltIsa elt_isa();

/// h = act(a) (for swiglu: silu(a), the gate). h may be a.
void activation_forward(Activation which, const float* a, float* h, std::int64_t n, EltIsa isa = elt_isa());
void activation_forward(Activation which, const double* a, double* h, std::int64_t n);
/// da = dh ∘ act'(a). da may be dh.
void activation_backward(Activation which, const float* a, const float* dh, float* da, std::int64_t n,
                         EltIsa isa = elt_isa());
void activation_backward(Activation which, const double* a, const double* dh, double* da, std::int64_t n);
/// h = silu(g) ∘ u (SwiGLU).
void swiglu_forward(const float* g, const float* u, float* h, std::int64_t n, EltIsa isa = elt_isa());
void swiglu_forward(const double* g, const double* u, double* h, std::int64_t n);
/// dg = dh ∘ u ∘ silu'(g), du = dh ∘ silu(g).
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, std::int64_t n,
                     EltIsa isa = elt_isa());
void swiglu_backward(const double* g, const double* u, const double* dh, double* dg, double* du, std::int64_t n);

/// One ISA's passes (activation_rows_kernel.hpp instantiates them).
template <class T>
struct EltKernels {
  void (*forward[4])(const T* a, T* h, std::int64_t n);  // indexed by Activation
  void (*backward[4])(const T* a, const T* dh, T* da, std::int64_t n);
  void (*swiglu_forward)(const T* g, const T* u, T* h, std::int64_t n);
  void (*swiglu_backward)(const T* g, const T* u, const T* dh, T* dg, T* du, std::int64_t n);
};

}  // namespace attn::nn::detail
