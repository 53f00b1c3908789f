// The linear-attention kernels (chunk_kernel.hpp, recurrent_kernel.hpp) for portable scalar.
#include "linear/kernel_includes.hpp"

#include "cpu/isa/vec_scalar.hpp"
#include "linear/chunk_kernel.hpp"
#include "linear/recurrent_kernel.hpp"
namespace attn::linear {
extern const LinearKernels kLinearScalarKernels{cpu::isa::Scalar::kName, ChunkKernel<cpu::isa::Scalar>::forward_task,
                                                ChunkKernel<cpu::isa::Scalar>::backward_task,
                                                RecurrentKernel<cpu::isa::Scalar>::forward_task};
}  // namespace attn::linear
