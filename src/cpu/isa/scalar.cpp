// The portable scalar cpu kernels (any CPU).
#include "cpu/isa/kernel_includes.hpp"
#include "cpu/isa/vec_scalar.hpp"
#include "cpu/sdpa_fwd_kernel.hpp"

namespace attn::cpu {
namespace {
void forward_task(const FwdPlan& plan, const FwdTask& t, Workspace& ws) { FwdKernel<isa::Scalar>::run(plan, t, ws); }
}  // namespace
extern const CpuKernels kScalarKernels{isa::Scalar::kName, forward_task};
}  // namespace attn::cpu
