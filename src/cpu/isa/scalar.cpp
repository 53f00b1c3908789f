// The ISA table entry of the portable scalar kernels (1 lane; any CPU).
#include "cpu/isa/kernel_includes.hpp"
#include "cpu/isa/vec_scalar.hpp"

namespace attn::cpu {
namespace {
bool always() { return true; }
}  // namespace
}  // namespace attn::cpu

#include "cpu/isa/make_kernels.hpp"
namespace attn::cpu {
extern const CpuKernels kScalarKernels = make_kernels<isa::Scalar>(always, always);
}  // namespace attn::cpu
