#pragma once
// The cpu path's plan, shared by the driver (cpu.cpp) and the per-ISA kernels (isa_*.cpp): the
// chunk length, padded widths and the fp32 projection in both orientations. One task is one
// (batch row, kv head): it owns that kv head's running sums and its G query heads, so GQA needs no
// copies and dk/dv are summed over the group without atomics.

#include <cstdint>
#include <vector>

#include "linear/problem.hpp"

namespace attn::linear {

/// Every padded width is a multiple of this (the widest vector, 16 fp32 lanes), so the GEMM
/// micro-kernels never see a column tail. Padding columns are zero.
inline constexpr std::int64_t kPad = 16;
inline constexpr std::int64_t pad(std::int64_t n) { return (n + kPad - 1) / kPad * kPad; }

struct CpuPlan {
  const LinearProblem* p = nullptr;
  std::int64_t C = 64;  // chunk length (multiple of kPad)
  std::int64_t Dp = 0, Fp = 0, Dvp = 0;
  std::vector<float> omega_t;  // favor: ωᵀ [Dp][Fp], zero padded
  std::vector<float> omega;    // favor: ω [Fp][Dp], zero padded
  float c = 1.0f;              // favor: D^(-1/4)
  float log_norm = 0.0f;       // favor: −½ ln m
  bool step = false;           // read state_in, write state_out
};

struct BwdArgs {
  const LinearAttentionGrads* g = nullptr;
  TensorView dout, out, den;
};

using LinearFwdTaskFn = void (*)(const CpuPlan&, const LinearAttentionOutputs&, std::int64_t b, std::int64_t kvh);
using LinearBwdTaskFn = void (*)(const CpuPlan&, const BwdArgs&, std::int64_t b, std::int64_t kvh);

/// One ISA's linear-attention kernels (named like the cpu backend's ISAs, cpu/isa.hpp).
struct LinearKernels {
  const char* name;
  LinearFwdTaskFn forward_task;  // chunked (chunk_kernel.hpp), causal or not
  LinearBwdTaskFn backward_task;
  LinearFwdTaskFn recurrent_task;  // causal only (recurrent_kernel.hpp)
};

}  // namespace attn::linear
