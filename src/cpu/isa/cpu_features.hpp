#pragma once
// The CPU feature tests of the ISA table's entries (isa/<isa>.cpp): each entry's `supported` is
// one of these. Compiled at baseline (included before a per-ISA region opens). x86 only.

#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace attn::cpu::isa {

/// CPUID leaf/subleaf, register (0 = EAX … 3 = EDX), bit: for feature bits that clang 14's
/// __builtin_cpu_supports does not know (the AVX/AVX-512 register state is checked by
/// __builtin_cpu_supports("avx2"/"avx512f")).
inline bool cpuid_bit(unsigned leaf, unsigned subleaf, int reg, unsigned bit) {
  unsigned r[4] = {0, 0, 0, 0};
  if (!__get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3])) return false;
  return (r[reg] >> bit) & 1u;
}

inline bool has_avx2_fma_f16c() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuid_bit(1, 0, 2, 29);  // F16C: CPUID.1:ECX[29]
}

inline bool has_avx512_f_bw_dq_vl() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
}

inline bool has_avx512bf16() { return has_avx512_f_bw_dq_vl() && cpuid_bit(7, 1, 0, 5); }  // CPUID.(7,1):EAX[5]

/// AMX bf16 tiles usable by this process (with AVX-512 BF16 for the vector work around them): the
/// CPU has AMX-TILE and AMX-BF16 (CPUID.(7,0):EDX[24], [22]), the OS enables the tile state in
/// XCR0 (XTILECFG, XTILEDATA: bits 17, 18), and Linux granted the process the tile data
/// permission, requested once with arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) (Linux
/// >= 5.16; the permission covers every thread of the process). False off Linux.
inline bool has_amx_bf16() {
#if defined(__linux__)
  static const bool ok = [] {
    if (!has_avx512bf16() || !cpuid_bit(1, 0, 2, 27)) return false;  // OSXSAVE: CPUID.1:ECX[27]
    if (!cpuid_bit(7, 0, 3, 24) || !cpuid_bit(7, 0, 3, 22)) return false;
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));  // XCR0
    constexpr unsigned kTileState = (1u << 17) | (1u << 18);
    if ((lo & kTileState) != kTileState) return false;
    constexpr long kArchReqXcompPerm = 0x1023;  // asm/prctl.h
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

inline bool is_amd() {
  __builtin_cpu_init();
  return __builtin_cpu_is("amd") != 0;
}

inline bool always() { return true; }

}  // namespace attn::cpu::isa
