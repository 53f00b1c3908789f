#pragma once
// The two implementations of linear attention behind linear_attention.cpp: the fp64 reference
// (quadratic masked form and a literal recurrence, reference.cpp) and the cpu path (chunked,
// GEMM-shaped, per-ISA kernels, cpu.cpp). Both take a validated LinearProblem.

#include "linear/features.hpp"
#include "linear/problem.hpp"

namespace attn::linear {

/// ω of the call as fp64 (elu: no ω).
FeatureSpec feature_spec(const LinearProblem& p);

void reference_forward(const LinearProblem& p, const LinearAttentionOutputs& o);
void reference_backward(const LinearProblem& p, const LinearAttentionGrads& g, const TensorView& dout);
void reference_step(const LinearProblem& p, const TensorView& out);

void cpu_forward(const LinearProblem& p, const LinearAttentionOutputs& o);
void cpu_backward(const LinearProblem& p, const LinearAttentionGrads& g, const TensorView& dout, const TensorView& out,
                  const TensorView& den);
void cpu_step(const LinearProblem& p, const TensorView& out);
/// The name of the kernels the cpu path runs now ("avx512", "avx2" or "scalar"; cpu.cpp).
const char* cpu_kernels_name();

}  // namespace attn::linear
