#pragma once
// Peak memory of the backward (extra memory O(N), shown by peak RSS at N = 16k against
// the naive baseline's). Each backend runs in a fresh child process (`attn bench --memory-probe
// cpu|naive`) so that getrusage's ru_maxrss is its own high-water mark.

#include <cstdint>
#include <cstdio>
#include <string>

#include "sweep.hpp"

namespace attn::bench {

/// One probe's result, as measured inside the child.
struct MemoryProbe {
  std::string backend;              ///< "cpu" or "naive"
  long peak_rss_kib = 0;            ///< getrusage(RUSAGE_SELF).ru_maxrss at the end
  long vm_hwm_kib = 0;              ///< VmHWM of /proc/self/status at the end (same thing, per address space)
  long before_backward_kib = 0;     ///< ru_maxrss after the inputs, outputs and forward, before the backward
  double backward_s = 0;            ///< wall time of the backward
  std::int64_t units_run = 0, units_total = 0;  ///< (b, kv head) units the backward ran
};

/// The default memory shape: B=1, H=16, N=16384, D=128, fp32, causal.
Shape memory_shape();
/// "1x16x16x16384x128c" (the --shapes form; Nq = Nk and D = Dv).
std::string shape_spec(const Shape& s);

/// In this process (the child): allocates and touches q, k, v, dout (random), out, lse, dq, dk, dv
/// (fp32, contiguous), runs attn's cpu forward for out and lse on `threads` threads, then the
/// backward: "cpu" = attn::sdpa_backward on `threads` threads; "naive" = NaiveAttentionBackward on
/// one thread (one [N, N] P and dP buffer), on the first (b, kv head) unit only: every unit reuses
/// the same buffers, so the first one reaches the peak (running all 16 at N = 16k takes minutes).
MemoryProbe run_memory_probe(const std::string& backend, const Shape& shape, int threads);
/// The child's one-line report on stdout, and its parser (false when `line` is not one).
std::string format_memory_probe(const MemoryProbe& probe);
bool parse_memory_probe(const std::string& line, MemoryProbe& probe);
/// In the parent: runs `<this executable> bench --memory-probe <backend> --shapes <spec> --threads
/// <threads>` and returns its report; throws attn::Error when the child fails.
MemoryProbe spawn_memory_probe(const std::string& backend, const Shape& shape, int threads);

}  // namespace attn::bench
