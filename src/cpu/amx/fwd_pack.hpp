#pragma once
// K and Vᵀ of a forward call packed once for the tile kernels (docs/amx.md): per logical batch
// row b and kv head, K as rows of Dp = round_up(D, 32) bf16 (the A operand of Sᵀ = K·Qᵀ, zero
// padded) and V transposed, Vᵀ [dvp][keys] bf16 (the A operand of Oᵀ = Vᵀ·Pᵀ, zero padded). Key
// slots beyond the sequence's length are zero (that memory is never read), and every (b, kvh)
// has 32 spare key slots, so a tile product may always run over whole 32-key blocks.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/problem.hpp"

namespace attn::cpu::amx {

/// std::allocator whose value-initialisation leaves the element uninitialised, so that resizing
/// the packed buffers does not clear memory that pack_forward then writes in full.
template <class T>
struct NoInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  NoInitAllocator() = default;
  template <class U>
  NoInitAllocator(const NoInitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

struct FwdPack {
  std::int64_t Dp = 0, dvp = 0;
  std::vector<std::int64_t> base, keys;  // per logical b: first slot of (b, kvh 0); slots per head
  std::vector<std::uint16_t, NoInitAllocator<std::uint16_t>> k, vt;  // every slot written by pack_forward

  bool empty() const { return keys.empty(); }
  const std::uint16_t* k_rows(std::int64_t b, std::int64_t kvh) const { return k.data() + (base[b] + kvh * keys[b]) * Dp; }
  /// Vᵀ of (b, kvh): dvp rows of keys[b] elements.
  const std::uint16_t* vt_rows(std::int64_t b, std::int64_t kvh) const { return vt.data() + (base[b] + kvh * keys[b]) * dvp; }
};

/// Packs k and v (bf16, inner stride 1) of p on `threads` threads.
void pack_forward(const core::SdpaProblem& p, std::int64_t dvp, int threads, FwdPack& out);

}  // namespace attn::cpu::amx
