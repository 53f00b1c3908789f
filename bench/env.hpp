#pragma once
// The benchmark process environment (docs/architecture.md §8, docs/performance.md): OpenBLAS forced to its best
// kernel for the CPU and OpenMP threads pinned to cores. Both libraries read their variables when
// they are loaded, before main, so setting them means re-executing the process once.

#include <string>

namespace attn::bench {

/// The OpenBLAS core type to force on this CPU: Cooperlake (AVX-512 BF16), SkylakeX (AVX-512),
/// Zen (AMD with AVX2), Haswell (other AVX2), "" when none applies.
std::string best_openblas_core();

/// Makes sure OPENBLAS_CORETYPE, OMP_PROC_BIND=spread and OMP_PLACES=cores are in effect: when
/// this process did not start with them, sets the missing ones (values the user set are kept)
/// and re-executes /proc/self/exe with the same arguments. Returns when the environment is in
/// effect, or (with a warning on stderr) when re-executing failed.
void ensure_bench_environment();

/// What the results were measured on.
struct MachineInfo {
  std::string cpu;            ///< "model name" of /proc/cpuinfo
  std::string isa;            ///< attn's active cpu ISA
  std::string compiled_isas;  ///< attn's compiled ISAs, best first, comma-separated
  std::string openblas_core;  ///< openblas_get_corename()
  std::string openblas_coretype_env, omp_proc_bind, omp_places;  ///< the variables as set
  int threads = 1;
  bool pinned = false;  ///< OpenMP threads bound to places (omp_get_proc_bind() != false)
};
MachineInfo machine_info(int threads);

}  // namespace attn::bench
