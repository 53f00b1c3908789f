#pragma once
// The cpu forward's plan: tile sizes, the task list and per-thread workspace shared between the
// driver (sdpa_fwd.cpp) and the per-ISA kernels (isa/*.cpp). A task is one FlashAttention-2 work
// unit: batch row b, kv head, and a block of Br query positions, covering all G query heads that
// share the kv head (so each K/V tile is packed once per group).

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "cpu/amx/fwd_pack.hpp"
#include "cpu/bwd_plan.hpp"
#include "cpu/softmax_state.hpp"

namespace attn::cpu {

struct FwdTask {
  std::int64_t b = 0;       // logical batch row (sequence under varlen)
  std::int64_t kvh = 0;     // kv head; query heads kvh·G .. kvh·G + G − 1
  std::int64_t i0 = 0;      // first query position (within the sequence)
  std::int64_t rows_q = 0;  // number of query positions (≤ Br)
};

struct FwdPlan {
  const core::SdpaProblem* p = nullptr;
  const SdpaOutputs* o = nullptr;
  std::int64_t Br = 64;     // query positions per task
  std::int64_t Bc = 64;     // keys per tile
  bool extras = false;      // variants::needs_element_pass: element pass per tile
  bool vector_terms = true; // additive terms and keep rules in vectors (cpu/score_terms.hpp)
  amx::FwdPack pack;        // K and Vᵀ packed for the tile ISAs (empty: the vector path runs)
  std::vector<FwdTask> tasks;
};

/// Per-thread scratch, sized once per call.
struct Workspace {
  std::vector<float> q, kt, v, s, o, row;
  std::vector<float> extra;              // the rows' additive terms and keep rules per key (bias, ALiBi, masks)
  std::vector<float> lo_f, hi_f, m_sub;  // per tile row: key range (tile-relative) and max to subtract
  std::vector<std::uint16_t> q16, k16, p16, v16;  // bf16 pair-packed tiles (bf16-dot ISAs only)
  std::vector<SoftmaxState> state;
  std::vector<std::int64_t> lo, hi;
};

}  // namespace attn::cpu
