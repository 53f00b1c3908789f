#pragma once
// Arithmetic peaks of this machine, measured (docs/performance.md): a register-resident loop of independent
// FMA (or vdpbf16ps) chains on every thread, widest vectors the CPU has.

#include <optional>
#include <string>

namespace attn::bench {

struct PeakResult {
  double best_gflops = 0;    ///< best of the repetitions: the estimate of the peak
  double median_gflops = 0;  ///< median of the repetitions (shows the noise)
  /// Best of Σ over threads of flops / thread CPU time: what the cores reach while scheduled. Equal
  /// to best_gflops on an idle machine; higher when other processes share the cores.
  double cpu_time_gflops = 0;
  std::string vector;        ///< "zmm", "ymm" or "scalar"
};

/// fp32 FMA peak on `threads` OpenMP threads: kPeakChains independent accumulator chains per
/// thread, zmm when the CPU has AVX-512F, else ymm (AVX2+FMA). `seconds` is the rough length of
/// one repetition.
PeakResult fma_peak(int threads, int reps, double seconds);
/// vdpbf16ps peak (2 flops per bf16 pair: 64 per zmm instruction), or nullopt without AVX512_BF16.
std::optional<PeakResult> bf16_peak(int threads, int reps, double seconds);

/// AMX tdpbf16ps peak (16·16·32·2 = 16384 flops per instruction; 4 independent 16 × 16 fp32
/// accumulator tiles per thread), or nullopt where the CPU/OS/process cannot run AMX tiles.
std::optional<PeakResult> amx_peak(int threads, int reps, double seconds);

/// Independent accumulator chains per thread. FMA latency is 4 cycles on 2 pipes, so at least 8
/// must be in flight; 12 leaves margin and still fits the 16 ymm registers with 2 operands.
inline constexpr int kPeakChains = 12;

}  // namespace attn::bench
