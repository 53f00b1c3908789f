// round_bf16_kernel.hpp for the baseline ISA (the compiler's default vectors, SSE2 on x86-64).
#include "cpu/isa/vec_scalar.hpp"
#include "nn/round_bf16_kernel.hpp"

namespace attn::nn::detail {
extern const RoundRowsFn kRoundBf16Scalar = RoundBf16<cpu::isa::Scalar>::rows;
}  // namespace attn::nn::detail
