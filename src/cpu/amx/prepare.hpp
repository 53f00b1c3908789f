#pragma once
// The per-call step of the tile ISAs (CpuKernels::prepare_forward): packs K and Vᵀ into
// plan.pack when the inputs are bf16 and a task has at least `min_rows` query rows (below that the
// packing would cost about as much as the products, and the vector path runs).

#include "cpu/fwd_plan.hpp"

namespace attn::cpu::amx {

void prepare_forward(FwdPlan& plan, int threads, std::int64_t min_rows);

}  // namespace attn::cpu::amx
