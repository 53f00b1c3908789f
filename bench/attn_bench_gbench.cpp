// attn_gbench: the `attn bench` sweep as Google Benchmark cases, for benchmark tooling (compare.py,
// --benchmark_format=json). Same shapes and the same environment (OpenBLAS forced to its best
// kernel, pinned OpenMP threads, see env.hpp); the FLOPS counter is a rate (printed as e.g. 45.1G/s;
// docs/performance.md flops), for the baselines the measured peak/sgemm rate.
//   attn_gbench [--shapes=full|quick|smoke|BxHqxHkvxNxD[c],...] [google benchmark flags]

#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "baselines.hpp"
#include "env.hpp"
#include "peak.hpp"
#include "sweep.hpp"

namespace {

using attn::bench::Case;
using attn::bench::CaseRunner;

void register_all(const std::string& shapes, int threads) {
  benchmark::RegisterBenchmark("baseline/fma_peak", [threads](benchmark::State& state) {
    double gflops = 0;
    for (auto _ : state) gflops = attn::bench::fma_peak(threads, 1, 0.05).best_gflops;
    state.counters["FLOPS"] = gflops * 1e9;
  })->Iterations(3)->UseRealTime();
  benchmark::RegisterBenchmark("baseline/sgemm_2048", [threads](benchmark::State& state) {
    double gflops = 0;
    for (auto _ : state) gflops = attn::bench::sgemm_gflops(2048, threads, 1);
    state.counters["FLOPS"] = gflops * 1e9;
  })->Iterations(3)->UseRealTime();
  for (const Case& c : attn::bench::cases_for(attn::bench::shape_set(shapes))) {
    const std::string name = std::string("fwd/") + attn::bench::impl_name(c.impl) + "/" + attn::dtype_name(c.dtype) +
                             "/" + c.shape.name();
    benchmark::RegisterBenchmark(name.c_str(), [c, threads](benchmark::State& state) {
      CaseRunner runner(c, threads);
      runner.run();  // warm-up
      for (auto _ : state) runner.run();
      state.counters["FLOPS"] =
          benchmark::Counter(attn::bench::fwd_flops(c.shape), benchmark::Counter::kIsIterationInvariantRate);
    })->UseRealTime()->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  attn::bench::ensure_bench_environment();
  std::string shapes = "full";
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--shapes=", 9) == 0)
      shapes = argv[i] + 9;
    else
      rest.push_back(argv[i]);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  const int threads = omp_get_max_threads();
  const auto machine = attn::bench::machine_info(threads);
  benchmark::AddCustomContext("cpu_model", machine.cpu);
  benchmark::AddCustomContext("attn_isa", machine.isa);
  benchmark::AddCustomContext("openblas_core", machine.openblas_core);
  benchmark::AddCustomContext("omp_threads", std::to_string(threads));
  benchmark::AddCustomContext("pinned", machine.pinned ? "true" : "false");
  try {
    register_all(shapes, threads);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn_gbench: %s\n", e.what());
    return 2;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
