#pragma once
// Runtime ISA selection for the cpu kernels (docs/architecture.md): the best compiled table entry the
// CPU supports, chosen once by cpuid; ATTN_ISA=amx|avx512bf16|avx512|avx2|scalar|amx_emu forces one.

#include <string>
#include <vector>

#include "cpu/isa/kernels.hpp"

namespace attn::cpu {

/// Names of the ISAs compiled into this build, best first.
std::vector<std::string> compiled_isas();
/// True when the running CPU can execute the named ISA's kernels.
bool isa_supported(const std::string& name);
/// The kernel table in use: the override when set, else ATTN_ISA, else the best supported one.
/// Throws attn::Error for an unknown or unsupported forced ISA.
const CpuKernels& active_kernels();
/// Forces an ISA for this process ("" = back to automatic). For tests and benchmarks.
void set_isa_override(const std::string& name);

}  // namespace attn::cpu
