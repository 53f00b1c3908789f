#pragma once
// Why the cpu backend cannot run a problem, for the forward and the backward alike: input dtype,
// inner strides, sequence lengths, and the ISA override. Each direction adds its own reasons.

#include "core/backend.hpp"
#include "cpu/isa/kernels.hpp"

namespace attn::cpu {

/// Appends the shared reasons to `why`; returns the active kernel table, or nullptr when the
/// forced ISA cannot run (the reason is then in `why`).
const CpuKernels* fast_path_reasons(const core::SdpaProblem& p, core::Reasons& why);

}  // namespace attn::cpu
