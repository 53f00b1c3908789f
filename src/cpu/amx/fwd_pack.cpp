// Packing of K and Vᵀ for the tile forward (fwd_pack.hpp). Plain copies: bf16 bits move as they are.

#include "cpu/amx/fwd_pack.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace attn::cpu::amx {

namespace {
const std::uint16_t* row(const TensorView& x, std::int64_t tb, std::int64_t h, std::int64_t n) {
  return static_cast<const std::uint16_t*>(x.at(tb * x.strides[0] + h * x.strides[1] + n * x.strides[2]));
}
}  // namespace

void pack_forward(const core::SdpaProblem& p, std::int64_t dvp, int threads, FwdPack& out) {
  constexpr std::int64_t kBlock = 64;  // keys per packing unit
  out.Dp = (p.D + 31) / 32 * 32;
  out.dvp = dvp;
  out.base.assign(static_cast<std::size_t>(p.B), 0);
  out.keys.assign(static_cast<std::size_t>(p.B), 0);
  std::int64_t slots = 0;
  struct Unit {
    std::int64_t b, kvh, j0;
  };
  std::vector<Unit> units;
  for (std::int64_t b = 0; b < p.B; ++b) {
    out.keys[b] = (p.Lk[b] + 31) / 32 * 32 + 32;
    out.base[b] = slots;
    slots += p.Hkv * out.keys[b];
    for (std::int64_t kvh = 0; kvh < p.Hkv; ++kvh)
      for (std::int64_t j0 = 0; j0 < out.keys[b]; j0 += kBlock) units.push_back({b, kvh, j0});
  }
  out.k.resize(static_cast<std::size_t>(slots * out.Dp));
  out.vt.resize(static_cast<std::size_t>(slots * dvp));
  const auto n_units = static_cast<std::int64_t>(units.size());
#pragma omp parallel for schedule(static) num_threads(std::max(1, threads))
  for (std::int64_t u = 0; u < n_units; ++u) {
    const Unit& w = units[static_cast<std::size_t>(u)];
    const std::int64_t tb = p.tensor_b[w.b], keys = out.keys[w.b], j1 = std::min(w.j0 + kBlock, keys);
    std::uint16_t* k = out.k.data() + (out.base[w.b] + w.kvh * keys) * out.Dp;
    std::uint16_t* vt = out.vt.data() + (out.base[w.b] + w.kvh * keys) * dvp;
    for (std::int64_t j = w.j0; j < j1; ++j) {
      std::uint16_t* kr = k + j * out.Dp;
      if (j < p.Lk[w.b]) {
        std::memcpy(kr, row(p.k, tb, w.kvh, p.tensor_col(w.b, j)), static_cast<std::size_t>(p.D) * 2);
        std::fill(kr + p.D, kr + out.Dp, std::uint16_t{0});
        const std::uint16_t* vr = row(p.v, tb, w.kvh, p.tensor_col(w.b, j));
        for (std::int64_t d = 0; d < p.Dv; ++d) vt[d * keys + j] = vr[d];
        for (std::int64_t d = p.Dv; d < dvp; ++d) vt[d * keys + j] = 0;
      } else {
        std::fill(kr, kr + out.Dp, std::uint16_t{0});
        for (std::int64_t d = 0; d < dvp; ++d) vt[d * keys + j] = 0;
      }
    }
  }
}

}  // namespace attn::cpu::amx

#include "cpu/amx/prepare.hpp"

namespace attn::cpu::amx {

void prepare_forward(FwdPlan& plan, int threads, std::int64_t min_rows) {
  const core::SdpaProblem& p = *plan.p;
  if (p.q.dtype != DType::bf16 || p.k.dtype != DType::bf16 || p.v.dtype != DType::bf16) return;
  if (p.G * std::min(plan.Br, p.Nq) < min_rows) return;
  pack_forward(p, (p.Dv + 15) / 16 * 16, threads, plan.pack);
}

}  // namespace attn::cpu::amx
