// The portable scalar cpu kernels (any CPU).
#include "cpu/isa/kernel_includes.hpp"
#include "cpu/isa/vec_scalar.hpp"
#include "cpu/sdpa_bwd_kernel.hpp"
#include "cpu/sdpa_fwd_kernel.hpp"

namespace attn::cpu {
namespace {
void forward_task(const FwdPlan& plan, const FwdTask& t, Workspace& ws) { FwdKernel<isa::Scalar>::run(plan, t, ws); }
void backward_task(const BwdPlan& plan, const BwdTask& t, BwdWorkspace& ws) { BwdKernel<isa::Scalar>::run(plan, t, ws); }
}  // namespace
extern const CpuKernels kScalarKernels{isa::Scalar::kName, forward_task, backward_task};
}  // namespace attn::cpu
