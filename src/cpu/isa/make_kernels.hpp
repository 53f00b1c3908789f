// The table entry of the ISA whose traits I the including file defines: every kernel template
// instantiated for I. Included by isa/<isa>.cpp inside its per-ISA region (isa/isa_begin.hpp),
// after the traits; no include guard (one ISA per file).
#include "cache/decode_kernel.hpp"
#include "cpu/isa/kernels.hpp"
#include "cpu/naive_rows_kernel.hpp"
#include "cpu/sdpa_bwd_kernel.hpp"
#include "cpu/sdpa_fwd_kernel.hpp"

namespace attn::cpu {
namespace {
// The tile ISAs (traits with a tile-operation class I::Tiles, docs/amx.md) pack K and Vᵀ once per call.
template <isa::VecTraits I>
void prepare_tiles(FwdPlan& plan, int threads) {
  amx::prepare_forward(plan, threads, I::kTileMinRows);
}
template <isa::VecTraits I>
constexpr FwdPrepareFn prepare_forward() {
  if constexpr (requires { typename I::Tiles; }) return &prepare_tiles<I>;
  else return nullptr;
}

template <isa::VecTraits I>
constexpr CpuKernels make_kernels(bool (*supported)(), bool (*preferred)()) {
  return {I::kName,
          supported,
          preferred,
          prepare_forward<I>(),
          &FwdKernel<I>::run,
          &BwdKernel<I>::run,
          {&BwdKernel<I>::delta_rows, &BwdKernel<I>::dq_rows},
          &kv::DecodeKernel<I>::run,
          {&naive_rows::softmax<I>, &naive_rows::delta<I>, &naive_rows::ds<I>}};
}
}  // namespace
}  // namespace attn::cpu
