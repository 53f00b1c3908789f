#pragma once
// One ISA's entry of the kernel table (docs/architecture.md, kernels): its name, the CPU test,
// and every kernel compiled for it — the cpu backend's forward and backward tasks, the KV cache's
// decode chunk, and the row passes of the bench's naive baseline. Each entry is defined by one
// file, isa/<isa>.cpp, with make_kernels (isa/make_kernels.hpp); isa_select.cpp lists them.

#include <cstdint>

#include "cache/decode_plan.hpp"
#include "cpu/bwd_plan.hpp"

namespace attn::cpu {

struct FwdPlan;
struct FwdTask;
struct Workspace;
using FwdTaskFn = void (*)(const FwdPlan&, const FwdTask&, Workspace&);
/// Per-call preparation of the forward before its tasks run, on `threads` threads (the tile ISAs
/// pack K and Vᵀ into plan.pack, cpu/amx/prepare.hpp); null for the vector ISAs.
using FwdPrepareFn = void (*)(FwdPlan&, int threads);

/// The naive BLAS baseline's row passes (cpu/naive_rows_kernel.hpp), vectorised with the ISA's exp.
struct NaiveRows {
  /// In place over `rows` rows of `s` (leading dim `ld`): row i keeps columns [0, hi_i) with
  /// hi_i = cols, or min(cols, i + causal_offset + 1) when causal_offset >= 0; p = softmax over
  /// them, 0 elsewhere; a row with no column is all 0.
  void (*softmax)(float* s, std::int64_t rows, std::int64_t cols, std::int64_t ld, std::int64_t causal_offset);
  /// delta[i] = Σ_j dout[i, j]·out[i, j] (leading dim cols).
  void (*delta)(float* delta, const float* dout, const float* out, std::int64_t rows, std::int64_t cols);
  /// dp[i, j] = p[i, j]·(dp[i, j] − delta[i]) in place (dS).
  void (*ds)(float* dp, const float* p, const float* delta, std::int64_t rows, std::int64_t cols, std::int64_t ld);
};

struct CpuKernels {
  const char* name;
  bool (*supported)();         // the running CPU can execute these kernels
  bool (*preferred)();         // auto-selected where supported (a tuning decision per CPU)
  FwdPrepareFn prepare_forward;  // null, or run once per forward call before its tasks
  FwdTaskFn forward_task;      // cpu/sdpa_fwd_kernel.hpp
  BwdTaskFn backward_task;     // cpu/sdpa_bwd_kernel.hpp
  BwdRows backward_rows;       // its row passes before and after the tasks (Δ, dQ)
  kv::DecodeChunkFn decode_chunk;  // cache/decode_kernel.hpp
  NaiveRows naive;             // the bench's baseline
};

}  // namespace attn::cpu
