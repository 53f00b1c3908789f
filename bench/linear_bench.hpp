#pragma once
// `attn bench --op linear` (docs/linear_attention.md): time against N for linear attention (elu and
// FAVOR+, non-causal and causal), the exact SDPA forward and a local window (SDPA's
// window_left/window_right, which skip tiles), strided attention (stride 64) alone and with the window
// (include/attn/sparse_attention.hpp), on B=1, H=8, D=Dv=64 by default; the fitted log-log
// slope of each, the N at which each beats exact attention, causal linear attention against the
// fp32 FMA peak measured in the same run (4·B·H·N·D·Dv flops), the peak memory of linear attention
// at the largest N, and a log-log PNG (gnuplot).

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace attn::bench {

struct LinearBenchOptions {
  std::vector<std::int64_t> lengths = {1024, 2048, 4096, 8192, 16384, 32768, 65536};
  std::int64_t exact_max_n = 65536;  ///< exact SDPA is timed up to here (quadratic: ~1.5 min at 32k + 64k)
  std::int64_t B = 1, H = 8, D = 64, Dv = 64;
  std::int64_t window = 256;  ///< local attention: keys within w/2 each side (causal: w − 1 behind)
  std::int64_t stride = 64;   ///< strided attention: keys j with (i − j) mod stride = 0 (and ∪ the window)
  std::int64_t favor_m = 0;   ///< FAVOR+ features; 0 = ⌈D ln D⌉ (the Performer default)
  /// Only these methods ("linear", "local", "strided", "exact"; "linear" = every linear row); empty = all.
  std::vector<std::string> only;
  int threads = 0, reps = 3;
  std::string json_path, plot_path;
};

/// Runs the sweep and prints the table and summary to `out`. Calls of ≥ 2 s are timed once.
void run_linear_bench(const LinearBenchOptions& opt, std::FILE* out);

}  // namespace attn::bench
