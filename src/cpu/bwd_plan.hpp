#pragma once
// The cpu backward's plan, shared between the driver (sdpa_bwd.cpp) and the per-ISA kernels
// (sdpa_bwd_kernel.hpp, compiled in isa/*.cpp). A task is one FlashAttention-2 backward work unit:
// batch row b, kv head, and a fixed chunk of consecutive KV blocks of Bc keys; it covers all G
// query heads of the kv group, owns the dK/dV rows of its KV blocks, and adds its dQ
// contributions to the fp32 partial buffer of its chunk. The chunk count depends on the shape
// only, and the driver sums the partial buffers in chunk order, so the bits of dQ do not depend
// on the thread count (docs/contract.md §10).

#include <cstdint>
#include <vector>

#include "core/backend.hpp"

namespace attn::cpu {

struct BwdTask {
  std::int64_t b = 0;         // logical batch row (sequence under varlen)
  std::int64_t kvh = 0;       // kv head; query heads kvh·G .. kvh·G + G − 1
  std::int64_t kb0 = 0;       // KV blocks [kb0, kb1) of Bc keys (within the sequence)
  std::int64_t kb1 = 0;
  std::int64_t chunk = 0;     // which dQ partial buffer it adds to
  bool q_pass = false;        // second-pass dQ scheme: a query tile [q0, q0 + Br) instead of KV blocks
  std::int64_t q0 = 0;
};

struct BwdPlan {
  const core::BackwardArgs* a = nullptr;
  std::int64_t Br = 64;       // query positions per tile
  std::int64_t Bc = 64;       // keys per KV block
  std::int64_t chunks = 1;    // dQ partial buffers
  std::int64_t Dp = 0, Dvp = 0;  // D and Dv rounded up to the vector width (row pitch of the tiles)
  bool extras = false;        // variants::needs_element_pass: element pass per tile
  bool vector_terms = true;   // additive terms and keep rules in vectors (cpu/score_terms.hpp)
  bool dq_second_pass = false;  // dQ by a second pass over query tiles (ATTN_BWD_DQ=second_pass), not chunk partials
  float* dq_acc = nullptr;    // [chunks][Bt·Hq·Nq][Dp] fp32, zero-initialised
  const float* delta = nullptr;  // Δ = rowsum(dO∘O) per query row [Bt·Hq·Nq]
  float* dbias_gather = nullptr;  // dbias asked for: score gradients [Bt][Hq][Nq][Nk] fp32, zero-initialised
  std::vector<BwdTask> tasks;

  /// Row index of tensor position n of query head h in tensor batch tb (dQ partials and Δ).
  std::int64_t row_id(const core::SdpaProblem& p, std::int64_t tb, std::int64_t h, std::int64_t n) const {
    return (tb * p.Hq + h) * p.Nq + n;
  }
  std::int64_t chunk_stride(const core::SdpaProblem& p) const { return p.q.shape[0] * p.Hq * p.Nq * Dp; }
  /// Element (tb, h, tensor row n, tensor column m) of the dbias gather.
  std::int64_t gather_offset(const core::SdpaProblem& p, std::int64_t tb, std::int64_t h, std::int64_t n,
                             std::int64_t m) const {
    return ((tb * p.Hq + h) * p.Nq + n) * p.Nk + m;
  }
};

/// Per-thread scratch, sized once per call from the plan (O(Bc·D + Br·Bc) floats).
struct BwdWorkspace {
  std::vector<float> k, kt, vt;      // K [Bc × Dp], Kᵀ [D × Bcp], Vᵀ [Dv × Bcp]
  std::vector<float> dk, dv;         // dK [Bc × Dp], dV [Bc × Dvp] accumulators of the KV block
  std::vector<float> q, dout;        // Q [Br × Dp], dO [Br × Dvp] of one query tile
  std::vector<float> s, pd, dp;      // S then P, P after dropout, dP then dS: [Br × Bcp] each
  std::vector<float> z, f;           // dropout factors (0 or 1/(1−p)), d(score)/d(scale·dot): [Br × Bcp]
  std::vector<float> fb;             // score_mod' (d score / d bias) when dbias is asked for: [Br × Bcp]
  std::vector<float> add, row;       // one row's additive terms; a conversion row
  std::vector<float> lse, delta;     // per tile row
  std::vector<std::int64_t> lo, hi;  // per tile row: visible keys, tile-relative ([0, 0) when empty)
};

using BwdTaskFn = void (*)(const BwdPlan&, const BwdTask&, BwdWorkspace&);

/// The driver's row passes around the tasks, in the ISA's vectors (sdpa_bwd_kernel.hpp).
struct BwdRows {
  /// Δ of every query row of sequence b, head h, into delta (indexed by BwdPlan::row_id).
  void (*delta)(const BwdPlan&, std::int64_t b, std::int64_t h, float* delta);
  /// dq rows [row0, row1) of the Bt·Hq·Nq row index: scale · the chunk partials summed in chunk order.
  void (*dq)(const BwdPlan&, std::int64_t row0, std::int64_t row1);
};

}  // namespace attn::cpu
