#pragma once
// The decode benchmark behind `attn bench --op decode` (and `attn bench-decode`): decode (Nq = 1)
// against caches of every requested dtype, layout, batch and length, cold (a buffer ≥ 2× the
// last-level cache is read between calls), reported as GB/s of cache bytes read and as a fraction
// of the machine's read bandwidth measured in the same run (streaming read, threads pinned).

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "attn/kv_cache.hpp"

namespace attn::bench {

struct DecodeBenchOptions {
  std::vector<std::int64_t> batches{1, 8};
  std::vector<std::int64_t> lengths{4096, 16384, 65536};
  std::vector<DType> dtypes{DType::f32, DType::bf16, DType::i8};
  std::vector<KvLayout> layouts{KvLayout::contiguous, KvLayout::paged};
  std::int64_t Hq = 32, Hkv = 8, D = 128;
  int repeats = 9;             ///< timed calls per configuration (median reported)
  int threads = 0;             ///< 0 = all
  bool cold = true;            ///< flush the LLC between calls
  double max_cache_gb = 6.0;   ///< skip configurations whose cache is larger
  std::string json_path;       ///< write the JSON report here ("" = none)
};

/// One measured configuration.
struct DecodeBenchResult {
  std::string cache_dtype, layout;
  std::int64_t B, Hq, Hkv, Nk, D;
  double ms_median, gbps, fraction_of_bandwidth;
};

/// Streaming read bandwidth (GB/s) over a buffer much larger than the LLC, threads pinned.
double measure_read_bandwidth_gbps(int threads);

/// Runs the sweep, prints a table to `out` and writes the JSON when asked. Returns the results.
std::vector<DecodeBenchResult> run_decode_bench(const DecodeBenchOptions& options, std::FILE* out);

}  // namespace attn::bench
