// The linear-attention kernels (chunk_kernel.hpp) for AVX-512 (F, BW, DQ, VL).
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
namespace attn::linear {
extern const LinearKernels kLinearAvx512Kernels{cpu::isa::Avx512::kName, ChunkKernel<cpu::isa::Avx512>::forward_task,
                                                 ChunkKernel<cpu::isa::Avx512>::backward_task};
}  // namespace attn::linear
#include "cpu/isa/isa_end.hpp"
