// cpuid-based selection of the cpu kernel table (see isa.hpp).

#include <cstdlib>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <mutex>
#include <string>

#include "attn/error.hpp"
#include "cpu/isa.hpp"

namespace attn::cpu {

#if ATTN_HAVE_X86_ISAS
extern const CpuKernels kAvx512Bf16Kernels;
extern const CpuKernels kAvx512Kernels;
extern const CpuKernels kAvx2Kernels;
#endif
extern const CpuKernels kScalarKernels;

namespace {

#if ATTN_HAVE_X86_ISAS
// Feature bits that clang 14's __builtin_cpu_supports does not know, read with cpuid directly
// (the AVX/AVX-512 register state is already checked by __builtin_cpu_supports("avx2"/"avx512f")).
bool cpuid_bit(unsigned leaf, unsigned subleaf, int reg, unsigned bit) {
  unsigned r[4] = {0, 0, 0, 0};
  if (!__get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3])) return false;
  return (r[reg] >> bit) & 1u;
}
bool has_f16c() { return cpuid_bit(1, 0, 2, 29); }        // CPUID.1:ECX[29]
bool has_avx512bf16() { return cpuid_bit(7, 1, 0, 5); }   // CPUID.(7,1):EAX[5]
#endif

struct Entry {
  const char* name;
  const CpuKernels* kernels;
  bool (*supported)();
  bool (*preferred)();  // auto-selected where supported (a tuning decision per CPU)
};

bool always() { return true; }

const std::vector<Entry>& entries() {
  static const std::vector<Entry> list = {
#if ATTN_HAVE_X86_ISAS
      {"avx512bf16", &kAvx512Bf16Kernels,
       [] {
         __builtin_cpu_init();
         return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                has_avx512bf16();
       },
       // The bf16 pair dot pays where vdpbf16ps runs at twice the fp32 FMA rate (AMD Zen 4/5,
       // KERNELS.md). On a Sapphire Rapids Xeon (2026-11-24, 1 thread, B=1 H=16 N=2048 D=128)
       // it ran at 0.8x the fp32 AVX-512 path on the same bf16 inputs, so Intel keeps avx512.
       [] {
         __builtin_cpu_init();
         return __builtin_cpu_is("amd") != 0;
       }},
      {"avx512", &kAvx512Kernels,
       [] {
         __builtin_cpu_init();
         return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
       },
       always},
      {"avx2", &kAvx2Kernels,
       [] {
         __builtin_cpu_init();
         return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
       },
       always},
#endif
      {"scalar", &kScalarKernels, always, always},
  };
  return list;
}

std::mutex override_mutex;
std::string override_name;

const CpuKernels& select(const std::string& forced, const char* source) {
  if (forced.empty()) {
    for (const Entry& e : entries())
      if (e.supported() && e.preferred()) return *e.kernels;
  }
  for (const Entry& e : entries()) {
    if (forced != e.name) continue;
    ATTN_CHECK(e.supported(), source, source, "=", forced, " but this CPU cannot run the ", forced, " kernels");
    return *e.kernels;
  }
  std::string names;
  for (const Entry& e : entries()) names += std::string(names.empty() ? "" : "|") + e.name;
  throw Error(source, std::string(source) + "=" + forced + " is not a compiled ISA; expected one of " + names);
}

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> r;
  for (const Entry& e : entries()) r.emplace_back(e.name);
  return r;
}

bool isa_supported(const std::string& name) {
  for (const Entry& e : entries())
    if (name == e.name) return e.supported();
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
