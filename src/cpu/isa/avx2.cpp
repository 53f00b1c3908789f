// The ISA table entry for AVX2 + FMA (+ F16C for fp16 inputs): every kernel at 8 fp32 lanes.
#include <immintrin.h>

#include "cpu/isa/cpu_features.hpp"
#include "cpu/isa/kernel_includes.hpp"

#define ATTN_ISA_TARGET "avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx2.hpp"
#include "cpu/isa/make_kernels.hpp"
namespace attn::cpu {
extern const CpuKernels kAvx2Kernels = make_kernels<isa::Avx2>(isa::has_avx2_fma_f16c, isa::always);
}  // namespace attn::cpu
#include "cpu/isa/isa_end.hpp"
