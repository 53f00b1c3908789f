// The ISA table entry for AVX-512 (F, BW, DQ, VL): every kernel at 16 fp32 lanes.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same bug: _mm512_undefined_ps in the unpack intrinsics
#endif
#include <immintrin.h>

#include "cpu/isa/cpu_features.hpp"
#include "cpu/isa/kernel_includes.hpp"

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512.hpp"
#include "cpu/isa/make_kernels.hpp"
namespace attn::cpu {
extern const CpuKernels kAvx512Kernels = make_kernels<isa::Avx512>(isa::has_avx512_f_bw_dq_vl, isa::always);
}  // namespace attn::cpu
#include "cpu/isa/isa_end.hpp"
