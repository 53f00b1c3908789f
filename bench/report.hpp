#pragma once
// A benchmark run's results with its baselines and machine: measured together, then written as
// JSON, a text table and (through gnuplot) a PNG plot.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "env.hpp"
#include "peak.hpp"
#include "sweep.hpp"

namespace attn::bench {

struct Baselines {
  PeakResult fma;                  ///< fp32 FMA peak, all threads, pinned
  std::optional<PeakResult> bf16;  ///< vdpbf16ps peak, where the CPU has AVX512_BF16
  std::optional<PeakResult> amx;   ///< AMX tdpbf16ps peak, where the CPU and OS run AMX tiles
  double sgemm_gflops = 0;         ///< OpenBLAS sgemm n³ on all threads
  std::int64_t sgemm_n = 2048;
  std::string naive_softmax_isa;   ///< the exp/softmax ISA used by the naive baseline
};

/// Measures every baseline on `threads` threads. `small` (the smoke shape set) shortens the peak
/// loops and uses sgemm 256³ so the run takes a fraction of a second.
Baselines measure_baselines(int threads, int reps, bool small);

struct Result {
  Case c;
  Timing timing;
  double gflops = 0;
  /// max |out - out of naive_blas on the same shape| (a check that both compute the same thing),
  /// negative when not compared.
  double max_abs_diff_vs_naive = -1;
};

struct Report {
  MachineInfo machine;
  Baselines baselines;
  std::vector<Result> results;
  std::string shapes;
  int reps = 0, warmup = 0;
  Op op = Op::fwd;  ///< what every result measures
};

/// GFLOP/s of the naive_blas result on the same shape and op, or 0 when there is none.
double naive_gflops_for(const Report& report, const Shape& shape, Op op = Op::fwd);

/// {"machine": {...}, "baselines": {...}, "settings": {...}, "results": [...]}.
nlohmann::json to_json(const Report& report);
/// Baseline lines and one table row per result (shape, backend, dtype, ms, GFLOP/s, % of the
/// fp32 FMA peak, cpu/naive GFLOP/s ratio on the same shape).
std::string format_table(const Report& report);
/// GFLOP/s against N per backend/dtype/D series, one panel per causal setting, the FMA peak and
/// the sgemm rate as horizontal lines. Runs gnuplot on a temporary script; throws attn::Error
/// when gnuplot is missing or fails.
void write_plot(const Report& report, const std::string& png_path);

}  // namespace attn::bench
