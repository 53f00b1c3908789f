// The cpu backend's forward driver: decides whether the fast path can run (named reasons when not),
// builds the task list (FlashAttention-2 work units: b, kv head, block of Br query positions, all
// G heads), and runs the tasks on OpenMP threads with per-thread workspaces. Tasks never share
// outputs, so the result does not depend on the thread count or schedule.

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "attn/error.hpp"
#include "core/backend.hpp"
#include "cpu/can_run.hpp"
#include "cpu/convert.hpp"
#include "cpu/fwd_plan.hpp"
#include "cpu/isa.hpp"
#include "cpu/isa/vec_traits.hpp"
#include "cpu/score_terms.hpp"
#include "cpu/task_order.hpp"
#include "cpu/tile_sizes.hpp"
#include "variants/pipeline.hpp"

namespace attn::cpu {
namespace {

void check_inner_stride(const TensorView& t, const char* name, core::Reasons& why) {
  if (t.shape[3] > 1 && t.strides[3] != 1)
    why.push_back(std::string("inner stride of ") + name + " is " + std::to_string(t.strides[3]) + ", the cpu backend needs 1");
}

bool can_forward(const core::ForwardArgs& a, core::Reasons& why) {
  const std::size_t before = why.size();
  fast_path_reasons(a.p, why);
  return why.size() == before;
}

/// ATTN_TILES=Br,Bc overrides the tile table (for tuning sweeps; the result then depends on it).
std::optional<TileSizes> tile_override() {
  static const std::optional<TileSizes> tiles = []() -> std::optional<TileSizes> {
    const char* env = std::getenv("ATTN_TILES");
    long br = 0, bc = 0;
    if (!env || std::sscanf(env, "%ld,%ld", &br, &bc) != 2 || br < 1 || bc < 1) return std::nullopt;
    return TileSizes{br, bc};
  }();
  return tiles;
}

std::vector<FwdTask> make_tasks(const core::SdpaProblem& p, std::int64_t Br) {
  std::vector<FwdTask> tasks;
  std::vector<std::int64_t> cost;
  for (std::int64_t b = 0; b < p.B; ++b) {
    const std::int64_t rows = p.varlen ? p.Lq[b] : p.Nq;  // non-varlen tasks also cover padded rows
    for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh) {
      for (std::int64_t i0 = 0; i0 < rows; i0 += Br) {
        const std::int64_t n = std::min(Br, rows - i0);
        const auto first = variants::window_range(p, b, i0), last = variants::window_range(p, b, i0 + n - 1);
        tasks.push_back({b, kvh, i0, n});
        cost.push_back(std::max<std::int64_t>(0, std::max(first.hi, last.hi) - std::min(first.lo, last.lo)));
      }
    }
  }
  return order_tasks(tasks, cost);
}

void forward(const core::ForwardArgs& a) {
  const core::SdpaProblem& p = a.p;
  const CpuKernels& kernels = active_kernels();
  FwdPlan plan;
  plan.p = &p;
  plan.o = &a.o;
  const bool amx_tiles = kernels.prepare_forward != nullptr && p.q.dtype == DType::bf16;  // the tile ISAs
  const TileSizes ts = tile_override().value_or(forward_tile_sizes(p.D, p.G, amx_tiles));
  plan.Br = ts.Br;
  plan.Bc = ts.Bc;
  plan.extras = variants::needs_element_pass(p);
  plan.vector_terms = vector_score_terms();
  plan.tasks = make_tasks(p, plan.Br);
  if (plan.tasks.empty()) return;
  // Tile rows padded to 2 vectors and Dv to 1 vector of the widest ISA (FwdKernel's rows_p, dvp).
  constexpr std::int64_t kRowPad = 2 * isa::kMaxLanes, kColPad = isa::kMaxLanes;
  const std::int64_t rows_p = (p.G * plan.Br + kRowPad - 1) / kRowPad * kRowPad, dvp = (p.Dv + kColPad - 1) / kColPad * kColPad;
  const std::int64_t Bc32 = (plan.Bc + 31) / 32 * 32;  // the tile ISAs write whole 32-key blocks of Sᵀ
  const int threads = a.p.params->num_threads > 0 ? a.p.params->num_threads : omp_get_max_threads();
  if (kernels.prepare_forward) kernels.prepare_forward(plan, threads);
  const auto n_tasks = static_cast<std::int64_t>(plan.tasks.size());
#pragma omp parallel num_threads(static_cast<int>(std::min<std::int64_t>(threads, n_tasks)))
  {
    Workspace ws;
    auto size = [](std::vector<float>& x, std::int64_t n) { x.resize(static_cast<std::size_t>(n)); };
    size(ws.q, rows_p * p.D);                    // Qᵀ
    size(ws.kt, plan.Bc * p.D);                  // K tile (converted dtypes only)
    size(ws.v, plan.Bc * dvp);                   // V tile (converted dtypes / ragged Dv only)
    size(ws.s, Bc32 * rows_p);                   // Sᵀ / Pᵀ
    size(ws.o, rows_p * dvp);                    // O accumulator
    size(ws.row, std::max(p.D, p.Dv) + isa::kMaxLanes);
    size(ws.extra, rows_p * ((plan.Bc + kColPad - 1) / kColPad * kColPad));  // row terms [rows × Bc] (additive_pass)
    size(ws.lo_f, rows_p);
    size(ws.hi_f, rows_p);
    size(ws.m_sub, rows_p);
    ws.state.resize(static_cast<std::size_t>(rows_p));
    if (p.q.dtype == DType::bf16) {  // pair-packed tiles of the bf16-dot and tile ISAs
      const std::int64_t Dp = (p.D + 32) / 32 * 32, Bcp = Bc32 + 2;
      ws.q16.resize(static_cast<std::size_t>(Dp * rows_p));
      ws.k16.resize(static_cast<std::size_t>(Bcp * Dp));
      ws.p16.resize(static_cast<std::size_t>(Bcp * rows_p));
      ws.v16.resize(static_cast<std::size_t>(Bcp * dvp));
    }
    ws.lo.resize(static_cast<std::size_t>(plan.Br));
    ws.hi.resize(static_cast<std::size_t>(plan.Br));
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < n_tasks; ++t) kernels.forward_task(plan, plan.tasks[static_cast<std::size_t>(t)], ws);
  }
}

}  // namespace

const CpuKernels* fast_path_reasons(const core::SdpaProblem& p, core::Reasons& why) {
  if (!is_input_dtype(p.q.dtype))
    why.push_back(std::string("q has dtype ") + dtype_name(p.q.dtype) + ", the cpu backend runs f32, bf16 and f16");
  check_inner_stride(p.q, "q", why);
  check_inner_stride(p.k, "k", why);
  check_inner_stride(p.v, "v", why);
  if (p.Nq >= (std::int64_t{1} << 31) || p.Nk >= (std::int64_t{1} << 31))
    why.push_back("sequence lengths of 2^31 or more are not supported by the cpu backend");
  try {
    return &active_kernels();
  } catch (const Error& e) {
    why.push_back(e.what());
    return nullptr;
  }
}

// The backward driver (sdpa_bwd.cpp).
bool can_backward(const core::BackwardArgs& a, core::Reasons& why);
void backward(const core::BackwardArgs& a);

}  // namespace attn::cpu

namespace attn::core {
const BackendOps& cpu_backend() {
  static const BackendOps ops{Backend::cpu, cpu::can_forward, cpu::forward, cpu::can_backward, cpu::backward};
  return ops;
}
}  // namespace attn::core
