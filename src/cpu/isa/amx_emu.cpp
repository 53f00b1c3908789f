// The ISA table entry of the AMX kernels on the scalar tile emulation (isa/vec_amx_emu.hpp): any
// CPU, never auto-selected; it exists so the tile path is tested on every machine (docs/amx.md).
#include "cpu/isa/kernel_includes.hpp"
#include "cpu/isa/vec_amx_emu.hpp"

namespace attn::cpu {
namespace {
bool always() { return true; }
bool never() { return false; }
}  // namespace
}  // namespace attn::cpu

#include "cpu/isa/make_kernels.hpp"
namespace attn::cpu {
extern const CpuKernels kAmxEmuKernels = make_kernels<isa::AmxEmu>(always, never);
}  // namespace attn::cpu
