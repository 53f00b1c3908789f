// Benchmark environment: re-execution with OPENBLAS_CORETYPE and OpenMP pinning, machine facts.

#include "env.hpp"

#include <omp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cpu/isa.hpp"

extern "C" char* openblas_get_corename(void);

namespace attn::bench {
namespace {

constexpr const char* kReexecMarker = "ATTN_BENCH_ENV";

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool cpu_is_amd() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("vendor_id", 0) == 0) return line.find("AuthenticAMD") != std::string::npos;
  return false;
}

}  // namespace

std::string best_openblas_core() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16")) return "Cooperlake";
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return cpu_is_amd() ? "Zen" : "Haswell";
#endif
  return "";
}

void ensure_bench_environment() {
  if (!env_or_empty(kReexecMarker).empty()) return;
  const std::string core = best_openblas_core();
  if (!core.empty()) setenv("OPENBLAS_CORETYPE", core.c_str(), /*overwrite=*/0);
  setenv("OMP_PROC_BIND", "spread", 0);
  setenv("OMP_PLACES", "cores", 0);
  setenv(kReexecMarker, "1", 1);

  // argv as the kernel holds it: NUL-separated in /proc/self/cmdline.
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (std::size_t pos = 0; pos < cmdline.size();) {
    const std::size_t end = cmdline.find('\0', pos);
    args.push_back(cmdline.substr(pos, end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (!args.empty()) execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "attn bench: warning: could not re-execute with OPENBLAS_CORETYPE/OMP_PROC_BIND set (%s); "
               "OpenBLAS keeps its own kernel choice and threads may be unpinned\n", std::strerror(errno));
}

MachineInfo machine_info(int threads) {
  MachineInfo m;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      m.cpu = colon == std::string::npos ? line : line.substr(line.find_first_not_of(' ', colon + 1));
      break;
    }
  }
  m.isa = attn::cpu::active_kernels().name;
  for (const auto& name : attn::cpu::compiled_isas()) m.compiled_isas += (m.compiled_isas.empty() ? "" : ",") + name;
  const char* core = openblas_get_corename();
  m.openblas_core = core ? core : "";
  m.openblas_coretype_env = env_or_empty("OPENBLAS_CORETYPE");
  m.omp_proc_bind = env_or_empty("OMP_PROC_BIND");
  m.omp_places = env_or_empty("OMP_PLACES");
  m.threads = threads;
  m.pinned = omp_get_proc_bind() != omp_proc_bind_false;
  return m;
}

}  // namespace attn::bench
