// The cpu backend's backward driver (FlashAttention-2 backward; docs/architecture.md §7): decides whether
// the fast path can run (named reasons when not), precomputes Δ_i = rowsum(dO_i∘O_i) in fp32,
// builds the tasks (b, kv head, fixed chunk of KV blocks; all G query heads), runs them on OpenMP
// threads, then sums the dQ partial buffers in chunk order. The two row passes (Δ, dQ) are the
// active ISA's (BwdKernel::delta_rows, dq_rows), parallel over rows. The chunk count is a function of the
// shape only (enough tasks for ~16 threads when B·Hkv is small), so dQ, dK and dV are bitwise
// identical for any thread count. Extra memory: per-thread tiles (O(Bc·D)), Δ (O(N)) and the
// chunks' fp32 dQ partials (chunks × B·Hq·Nq·D, kept between calls on the calling thread up to
// 32 MiB, so repeated calls reuse their pages); with dbias, an fp32 gather of every score
// gradient (B·Hq·Nq·Nk), reduced over the bias's broadcast axes in index order (as the reference).

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "core/backend.hpp"
#include "cpu/bwd_plan.hpp"
#include "cpu/can_run.hpp"
#include "cpu/isa.hpp"
#include "cpu/isa/vec_traits.hpp"
#include "cpu/score_terms.hpp"
#include "cpu/task_order.hpp"
#include "cpu/tile_sizes.hpp"
#include "variants/pipeline.hpp"

namespace attn::cpu {
namespace {

// Tasks the chunking aims for when B·Hkv is small (a machine larger than this 2-core one).
constexpr std::int64_t kTargetTasks = 16;

/// ATTN_BWD_DQ=second_pass computes dQ in a second pass over query tiles (recomputing S, P and dP)
/// instead of the default fixed-chunk partial buffers; kept to measure the two.
bool second_pass_dq() {
  static const bool second = [] {
    const char* env = std::getenv("ATTN_BWD_DQ");
    return env && std::string(env) == "second_pass";
  }();
  return second;
}

/// Tile sizes: tile_sizes.hpp's table, or ATTN_BWD_TILES=Br,Bc for sweeps (as ATTN_TILES for the forward).
TileSizes backward_tiles(const core::SdpaProblem& p) {
  static const std::optional<TileSizes> forced = []() -> std::optional<TileSizes> {
    const char* env = std::getenv("ATTN_BWD_TILES");
    long br = 0, bc = 0;
    if (!env || std::sscanf(env, "%ld,%ld", &br, &bc) != 2 || br < 1 || bc < 1) return std::nullopt;
    return TileSizes{br, bc};
  }();
  if (forced) return *forced;
  std::int64_t max_keys = 0;
  for (std::int64_t b = 0; b < p.B; ++b) max_keys = std::max(max_keys, p.Lk[b]);
  return backward_tile_sizes(max_keys);
}

// Row pitch of the tiles (D, Dv and Bc rounded up): a multiple of every ISA's vector width
// (isa::VecTraits checks W divides kMaxLanes).
constexpr std::int64_t kPitch = isa::kMaxLanes;

std::int64_t round_up(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }

/// Tasks of every (b, kv head): `chunks` runs of consecutive KV blocks, longest first within
/// each (b, kv head) so that unequal (causal) tasks balance under dynamic scheduling.
std::vector<BwdTask> make_tasks(const core::SdpaProblem& p, std::int64_t chunks, std::int64_t Br, std::int64_t Bc) {
  std::vector<BwdTask> tasks;
  std::vector<std::int64_t> cost;
  for (std::int64_t b = 0; b < p.B; ++b) {
    const std::int64_t nkb = (p.Lk[b] + Bc - 1) / Bc;
    std::vector<std::int64_t> block_cost(static_cast<std::size_t>(nkb), 0);  // query rows that see each KV block
    for (std::int64_t i0 = 0; i0 < p.Lq[b]; i0 += Br) {
      const std::int64_t br = std::min(Br, p.Lq[b] - i0);
      const auto first = variants::window_range(p, b, i0), last = variants::window_range(p, b, i0 + br - 1);
      for (std::int64_t kb = first.lo / Bc; kb < nkb && kb * Bc < last.hi; ++kb) block_cost[kb] += br;
    }
    for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh)
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::int64_t kb0 = c * nkb / chunks, kb1 = (c + 1) * nkb / chunks;
        if (kb0 == kb1) continue;
        tasks.push_back({b, kvh, kb0, kb1, c});
        cost.push_back(std::accumulate(block_cost.begin() + kb0, block_cost.begin() + kb1, std::int64_t{0}) + (kb1 - kb0));
      }
  }
  return order_tasks(tasks, cost);
}

/// Δ_i = Σ_d dO_id·O_id (− dlse_i when given) in fp32 for every query row that a sequence owns,
/// in the active ISA's vectors (BwdKernel::delta_rows), one (sequence, head) per iteration.
void compute_delta(const CpuKernels& kernels, const BwdPlan& plan, float* delta, int threads) {
  const core::SdpaProblem& p = plan.a->p;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < p.B; ++b)
    for (std::int64_t h = 0; h < p.Hq; ++h) kernels.backward_rows.delta(plan, b, h, delta);
}

/// dq = scale · Σ_chunks partial (in chunk order), every row (rows no sequence reaches get 0), in
/// the active ISA's vectors (BwdKernel::dq_rows), rows split evenly between the threads.
void write_dq(const CpuKernels& kernels, const BwdPlan& plan, int threads) {
  const core::SdpaProblem& p = plan.a->p;
  const std::int64_t rows = p.q.shape[0] * p.Hq * p.Nq;
  const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(rows, 8 * threads));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t part = 0; part < parts; ++part)
    kernels.backward_rows.dq(plan, part * rows / parts, (part + 1) * rows / parts);
}

// Partial buffers up to this size are kept between calls (per calling thread), so a training
// loop's backward reuses the same pages every step instead of faulting in fresh ones.
constexpr std::size_t kKeptScratchFloats = std::size_t{8} << 20;  // 32 MiB

/// n zeroed floats for the dQ partials, zeroed on `threads` threads.
float* dq_partials(std::size_t n, int threads, std::unique_ptr<float[]>& own) {
  thread_local std::unique_ptr<float[]> kept;
  thread_local std::size_t kept_n = 0;
  float* buf = nullptr;
  if (n <= kKeptScratchFloats) {
    if (kept_n < n) {
      kept.reset(new float[n]);
      kept_n = n;
    }
    buf = kept.get();
  } else {
    own.reset(new float[n]);
    buf = own.get();
  }
  constexpr std::size_t kBlock = std::size_t{1} << 14;
  const auto blocks = static_cast<std::int64_t>((n + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static) num_threads(threads) if (blocks > 4)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const std::size_t e0 = static_cast<std::size_t>(blk) * kBlock;
    std::memset(buf + e0, 0, std::min(kBlock, n - e0) * sizeof(float));
  }
  return buf;
}

/// dbias = Σ over the bias's broadcast axes of the gathered score gradients, in fp64 and in index
/// order (tb, h, row, col) for every output element: the same bits for any thread count.
void reduce_dbias(const core::SdpaProblem& p, const TensorView& dbias, const float* gather, int threads) {
  const std::int64_t full[4] = {p.q.shape[0], p.Hq, p.Nq, p.Nk};
  std::int64_t shape[4] = {1, 1, 1, 1}, strides[4] = {0, 0, 0, 0};  // dbias right-aligned to 4 axes
  for (int ax = 0; ax < dbias.rank; ++ax) {
    shape[4 - dbias.rank + ax] = dbias.shape[ax];
    strides[4 - dbias.rank + ax] = dbias.strides[ax];
  }
  const std::int64_t n_out = shape[0] * shape[1] * shape[2] * shape[3];
  // Per axis: the range of full indices summed into an output index (all of them on broadcast axes).
  auto span = [&](int ax, std::int64_t o) {
    return shape[ax] == 1 ? std::pair<std::int64_t, std::int64_t>{0, full[ax]} : std::pair{o, o + 1};
  };
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t e = 0; e < n_out; ++e) {
    std::int64_t o[4], rest = e;
    for (int ax = 3; ax >= 0; --ax) {
      o[ax] = rest % shape[ax];
      rest /= shape[ax];
    }
    const auto [b0, b1] = span(0, o[0]);
    const auto [h0, h1] = span(1, o[1]);
    const auto [r0, r1] = span(2, o[2]);
    const auto [c0, c1] = span(3, o[3]);
    double sum = 0.0;
    for (std::int64_t tb = b0; tb < b1; ++tb)
      for (std::int64_t h = h0; h < h1; ++h)
        for (std::int64_t row = r0; row < r1; ++row) {
          const float* g = gather + ((tb * p.Hq + h) * p.Nq + row) * p.Nk;
          for (std::int64_t col = c0; col < c1; ++col) sum += g[col];
        }
    store_f64(dbias, o[0] * strides[0] + o[1] * strides[1] + o[2] * strides[2] + o[3] * strides[3], sum);
  }
}

/// dK/dV rows beyond Lk_b (padding outside varlen) are 0: no task owns them. Contiguous rows are
/// cleared bytewise (all-zero bits are +0 in every float dtype), others element by element.
void zero_padded_kv(const core::BackwardArgs& a, int threads) {
  const core::SdpaProblem& p = a.p;
  if (p.varlen) return;
  auto clear = [](const TensorView& t, std::int64_t b, std::int64_t kvh, std::int64_t n, std::int64_t n_el) {
    const std::int64_t base = b * t.strides[0] + kvh * t.strides[1] + n * t.strides[2];
    if (t.strides[3] == 1)
      std::memset(t.at(base), 0, static_cast<std::size_t>(n_el) * dtype_size(t.dtype));
    else
      for (std::int64_t d = 0; d < n_el; ++d) store_f64(t, base + d * t.strides[3], 0.0);
  };
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < p.B; ++b)
    for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh)
      for (std::int64_t n = p.Lk[b]; n < p.Nk; ++n) {
        clear(a.g.dk, b, kvh, n, p.D);
        clear(a.g.dv, b, kvh, n, p.Dv);
      }
}

/// Runs `tasks` on OpenMP threads (dynamic schedule), each thread with its own workspace.
void run_tasks(const BwdPlan& plan, const CpuKernels& kernels, int threads, const std::vector<BwdTask>& tasks) {
  const core::SdpaProblem& p = plan.a->p;
  const auto n_tasks = static_cast<std::int64_t>(tasks.size());
  if (n_tasks > 0) {
#pragma omp parallel num_threads(static_cast<int>(std::min<std::int64_t>(threads, n_tasks)))
    {
      BwdWorkspace ws;
      const std::int64_t bcp = round_up(plan.Bc, kPitch);
      auto size = [](std::vector<float>& x, std::int64_t n) { x.resize(static_cast<std::size_t>(n)); };
      size(ws.k, plan.Bc * plan.Dp);
      size(ws.kt, p.D * bcp);
      size(ws.vt, p.Dv * bcp);
      size(ws.dk, plan.Bc * plan.Dp);
      size(ws.dv, plan.Bc * plan.Dvp);
      size(ws.q, plan.Br * plan.Dp);
      size(ws.dout, plan.Br * plan.Dvp);
      for (auto* t : {&ws.s, &ws.pd, &ws.dp, &ws.z, &ws.f}) size(*t, plan.Br * bcp);
      if (plan.dbias_gather && p.mask().score_mod) size(ws.fb, plan.Br * bcp);
      size(ws.add, bcp);
      size(ws.row, plan.Dvp);
      size(ws.lse, plan.Br);
      size(ws.delta, plan.Br);
      ws.lo.resize(static_cast<std::size_t>(plan.Br));
      ws.hi.resize(static_cast<std::size_t>(plan.Br));
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t t = 0; t < n_tasks; ++t) kernels.backward_task(plan, tasks[static_cast<std::size_t>(t)], ws);
    }
  }
}

}  // namespace

bool can_backward(const core::BackwardArgs& a, core::Reasons& why) {
  const core::SdpaProblem& p = a.p;
  const std::size_t before = why.size();
  const CpuKernels* kernels = fast_path_reasons(p, why);
  if (p.mask().score_mod && !p.mask().score_mod.grad)
    why.push_back("score_mod has no grad, so its backward is undefined");
  if (kernels && !kernels->backward_task) why.push_back(std::string(kernels->name) + " has no backward kernel");
  return why.size() == before;
}

void backward(const core::BackwardArgs& a) {
  const core::SdpaProblem& p = a.p;
  const CpuKernels& kernels = active_kernels();
  const int threads = p.params->num_threads > 0 ? p.params->num_threads : omp_get_max_threads();
  BwdPlan plan;
  plan.a = &a;
  const TileSizes tiles = backward_tiles(p);
  plan.Br = tiles.Br;
  plan.Bc = tiles.Bc;
  plan.Dp = round_up(p.D, kPitch);
  plan.Dvp = round_up(p.Dv, kPitch);
  plan.extras = variants::needs_element_pass(p);
  plan.vector_terms = vector_score_terms();
  std::int64_t max_nkb = 1;
  for (std::int64_t b = 0; b < p.B; ++b) max_nkb = std::max(max_nkb, (p.Lk[b] + plan.Bc - 1) / plan.Bc);
  const std::int64_t units = std::max<std::int64_t>(1, p.B * p.Hkv);
  plan.chunks = std::clamp<std::int64_t>((kTargetTasks + units - 1) / units, 1, max_nkb);
  plan.dq_second_pass = second_pass_dq();
  if (plan.dq_second_pass) plan.chunks = 1;  // the first pass writes no dQ; the second owns its rows
  std::vector<float> delta(static_cast<std::size_t>(p.q.shape[0] * p.Hq * p.Nq), 0.0f);
  std::unique_ptr<float[]> dq_own;  // only when the partials are too large to keep between calls
  plan.delta = delta.data();
  plan.dq_acc = dq_partials(static_cast<std::size_t>(plan.chunks * plan.chunk_stride(p)), threads, dq_own);
  std::vector<float> dbias_gather;  // hidden, skipped and padded positions stay 0
  if (a.g.dbias.defined()) {
    dbias_gather.assign(static_cast<std::size_t>(p.q.shape[0] * p.Hq * p.Nq * p.Nk), 0.0f);
    plan.dbias_gather = dbias_gather.data();
  }
  compute_delta(kernels, plan, delta.data(), threads);
  plan.tasks = make_tasks(p, plan.chunks, plan.Br, plan.Bc);
  std::vector<BwdTask> q_tasks;  // second-pass dQ scheme: one task per (b, kv head, query tile)
  if (plan.dq_second_pass)
    for (std::int64_t b = 0; b < p.B; ++b)
      for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh)
        for (std::int64_t i0 = 0; i0 < p.Lq[b]; i0 += plan.Br) {
          BwdTask t{b, kvh, 0, 0, 0};
          t.q_pass = true;
          t.q0 = i0;
          q_tasks.push_back(t);
        }
  run_tasks(plan, kernels, threads, plan.tasks);
  run_tasks(plan, kernels, threads, q_tasks);
  write_dq(kernels, plan, threads);
  zero_padded_kv(a, threads);
  if (plan.dbias_gather) reduce_dbias(p, a.g.dbias, plan.dbias_gather, threads);
}

}  // namespace attn::cpu
