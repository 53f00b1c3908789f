// The ISA table entry for AVX-512 with AVX512_BF16: bf16 inputs of the forward use the vdpbf16ps
// pair dot for QKᵀ and P·V (isa/vec_avx512bf16.hpp); everything else runs the AVX-512 fp32 code.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same bug: _mm512_undefined_ps in the unpack intrinsics
#endif
#include <immintrin.h>

#include "cpu/isa/cpu_features.hpp"
#include "cpu/isa/kernel_includes.hpp"

namespace attn::cpu {
namespace {
// The bf16 pair dot pays where vdpbf16ps runs at twice the fp32 FMA rate (AMD Zen 4/5,
// docs/performance.md §2–§3). On a Sapphire Rapids Xeon (2026-11-24, 1 thread, B=1 H=16 N=2048 D=128) it ran at
// 0.8x the fp32 AVX-512 path on the same bf16 inputs, so Intel keeps avx512.
bool preferred() { return isa::is_amd(); }
}  // namespace
}  // namespace attn::cpu

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512bf16.hpp"
#include "cpu/isa/make_kernels.hpp"
namespace attn::cpu {
extern const CpuKernels kAvx512Bf16Kernels = make_kernels<isa::Avx512Bf16>(isa::has_avx512bf16, preferred);
}  // namespace attn::cpu
#include "cpu/isa/isa_end.hpp"
