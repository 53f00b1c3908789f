// The cpu kernels for AVX-512 (F, BW, DQ, VL).
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "cpu/isa/kernel_includes.hpp"

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512.hpp"
#include "cpu/sdpa_bwd_kernel.hpp"
#include "cpu/sdpa_fwd_kernel.hpp"
namespace attn::cpu {
namespace {
void forward_task(const FwdPlan& plan, const FwdTask& t, Workspace& ws) { FwdKernel<isa::Avx512>::run(plan, t, ws); }
void backward_task(const BwdPlan& plan, const BwdTask& t, BwdWorkspace& ws) { BwdKernel<isa::Avx512>::run(plan, t, ws); }
}  // namespace
extern const CpuKernels kAvx512Kernels{isa::Avx512::kName, forward_task, backward_task};
}  // namespace attn::cpu
#include "cpu/isa/isa_end.hpp"
