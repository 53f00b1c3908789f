// The linear-attention kernels (chunk_kernel.hpp, recurrent_kernel.hpp) for AVX2 + FMA.
#include <immintrin.h>

#include "linear/kernel_includes.hpp"

#define ATTN_ISA_TARGET "avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx2.hpp"
#include "linear/chunk_kernel.hpp"
#include "linear/recurrent_kernel.hpp"
namespace attn::linear {
extern const LinearKernels kLinearAvx2Kernels{cpu::isa::Avx2::kName, ChunkKernel<cpu::isa::Avx2>::forward_task,
                                              ChunkKernel<cpu::isa::Avx2>::backward_task,
                                              RecurrentKernel<cpu::isa::Avx2>::forward_task};
}  // namespace attn::linear
#include "cpu/isa/isa_end.hpp"
