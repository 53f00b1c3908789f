// The cpu kernels for AVX2 + FMA (+ F16C for fp16 inputs).
#include <immintrin.h>

#include "cpu/isa/kernel_includes.hpp"

#define ATTN_ISA_TARGET "avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx2.hpp"
#include "cpu/sdpa_bwd_kernel.hpp"
#include "cpu/sdpa_fwd_kernel.hpp"
namespace attn::cpu {
namespace {
void forward_task(const FwdPlan& plan, const FwdTask& t, Workspace& ws) { FwdKernel<isa::Avx2>::run(plan, t, ws); }
void backward_task(const BwdPlan& plan, const BwdTask& t, BwdWorkspace& ws) { BwdKernel<isa::Avx2>::run(plan, t, ws); }
}  // namespace
extern const CpuKernels kAvx2Kernels{isa::Avx2::kName, forward_task, backward_task};
}  // namespace attn::cpu
#include "cpu/isa/isa_end.hpp"
