// The ISA table entry for AMX (AMX-TILE, AMX-BF16) with AVX-512 + AVX512_BF16: the bf16 forward's
// two products on tiles (amx/fwd_tiles.hpp, docs/amx.md); every other kernel (fp32/fp16 forward,
// backward, decode, the bench's rows) is the AVX-512 code instantiated for these traits.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same bug: _mm512_undefined_ps in the unpack intrinsics
#endif
#include <immintrin.h>

#include "cpu/isa/cpu_features.hpp"
#include "cpu/isa/kernel_includes.hpp"

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c,amx-tile,amx-bf16"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_amx.hpp"
#include "cpu/isa/make_kernels.hpp"
namespace attn::cpu {
extern const CpuKernels kAmxKernels = make_kernels<isa::Amx>(isa::has_amx_bf16, isa::always);
}  // namespace attn::cpu
#include "cpu/isa/isa_end.hpp"
