// The ISA table (see isa.hpp): one entry per ISA compiled into this build, best first, and the
// run-time choice among them. Each entry is defined by isa/<isa>.cpp; the CMake helper attn_isa
// (src/cpu/CMakeLists.txt) compiles that file and defines ATTN_ISA_<NAME> where the target
// architecture has the ISA — the one architecture guard of the kernels.

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "cpu/isa.hpp"

namespace attn::cpu {

#if ATTN_ISA_AMX
extern const CpuKernels kAmxKernels;
#endif
#if ATTN_ISA_AVX512BF16
extern const CpuKernels kAvx512Bf16Kernels;
#endif
#if ATTN_ISA_AVX512
extern const CpuKernels kAvx512Kernels;
#endif
#if ATTN_ISA_AVX2
extern const CpuKernels kAvx2Kernels;
#endif
extern const CpuKernels kScalarKernels;
#if ATTN_ISA_AMX_EMU
extern const CpuKernels kAmxEmuKernels;
#endif

namespace {

const std::vector<const CpuKernels*>& table() {
  static const std::vector<const CpuKernels*> list = {
#if ATTN_ISA_AMX
      &kAmxKernels,  // bf16 forward on tiles, the rest AVX-512: preferred wherever the tiles run
#endif
#if ATTN_ISA_AVX512BF16
      &kAvx512Bf16Kernels,
#endif
#if ATTN_ISA_AVX512
      &kAvx512Kernels,
#endif
#if ATTN_ISA_AVX2
      &kAvx2Kernels,
#endif
      &kScalarKernels,
#if ATTN_ISA_AMX_EMU
      &kAmxEmuKernels,  // the tile kernels on the scalar emulation: tests only, never preferred
#endif
  };
  return list;
}

std::mutex override_mutex;
std::string override_name;

const CpuKernels& select(const std::string& forced, const char* source) {
  if (forced.empty()) {
    for (const CpuKernels* e : table())
      if (e->supported() && e->preferred()) return *e;
  }
  for (const CpuKernels* e : table()) {
    if (forced != e->name) continue;
    ATTN_CHECK(e->supported(), unsupported, source, "= ", forced, ", but this CPU cannot run the ", forced,
               " kernels, expected an ISA it supports");
    return *e;
  }
  std::string names;
  for (const CpuKernels* e : table()) names += std::string(names.empty() ? "" : "|") + e->name;
  throw Error(ErrorKind::unsupported, source, "= " + forced + ", which is not a compiled ISA, expected one of " + names);
}

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> r;
  for (const CpuKernels* e : table()) r.emplace_back(e->name);
  return r;
}

bool isa_supported(const std::string& name) {
  for (const CpuKernels* e : table())
    if (name == e->name) return e->supported();
  return false;
}

void set_isa_override(const std::string& name) {
  std::lock_guard lock(override_mutex);
  override_name = name;
}

const CpuKernels& active_kernels() {
  {
    std::lock_guard lock(override_mutex);
    if (!override_name.empty()) return select(override_name, "set_isa_override");
  }
  static const CpuKernels* from_env = [] {
    const char* env = std::getenv("ATTN_ISA");
    return &select(env ? env : "", "ATTN_ISA");
  }();
  return *from_env;
}

}  // namespace attn::cpu
