#pragma once
// KvCache's storage (include/attn/kv_cache.hpp), shared by the cache operations (kv_cache.cpp) and
// the decode driver and kernels (decode.cpp, decode_kernel.hpp).
//
// Addressing, the same formula for both layouts so that the kernel cannot tell them apart:
//   K row of (b, h, j) = k_pages[b][j >> shift] + (h·head_tokens + (j & mask))·D   elements
// contiguous: one "page" per batch row holding [Hkv, capacity, D]; shift = 62 (every j < 2^62 is on
//             page 0), mask = all ones, head_tokens = capacity.
// paged:      pages of [Hkv, P, D] from a pool, P = page_size (a power of two ≥ 16), shift = log2 P,
//             mask = P − 1, head_tokens = P; k_pages[b] is row b's block table turned into pointers.
// V (Dv elements per row) and the i8 scales (one float per row) follow the same formula. Every
// aligned block of 16 tokens lies on one page, so the kernel walks keys in such blocks.

#include <cstdint>
#include <vector>

#include "attn/kv_cache.hpp"
#include "attn/tensor.hpp"

namespace attn {

struct KvCache::Impl {
  static constexpr std::int64_t kBlock = 16;  // tokens per kernel block; divides every page size

  KvCacheConfig cfg;
  std::int64_t B = 0, Hkv = 0, D = 0, Dv = 0, cap = 0;
  std::int64_t head_tokens = 0, shift = 62, mask = (std::int64_t{1} << 62) - 1;
  bool ro = false;
  std::vector<std::int64_t> len;

  // contiguous storage: k [B, Hkv, cap, D], v [B, Hkv, cap, Dv], scales [B, Hkv, cap] (i8 only)
  Tensor k_buf, v_buf, ks_buf, vs_buf;
  // paged storage: one tensor per page; free list (LIFO: the page freed last is reused first)
  std::vector<Tensor> k_pg, v_pg, ks_pg, vs_pg;
  std::vector<std::int32_t> free_pages;
  std::vector<std::vector<std::int32_t>> table;

  // per row: page base pointers (what the kernel reads)
  std::vector<std::vector<const char*>> kp, vp;
  std::vector<std::vector<const float*>> ksp, vsp;

  bool paged() const { return cfg.layout == KvLayout::paged; }
  bool quantised() const { return cfg.dtype == DType::i8; }
  std::int64_t elem_size() const { return static_cast<std::int64_t>(dtype_size(cfg.dtype)); }

  /// Byte address of K (which = 0) or V (which = 1) row (b, h, j).
  const char* row(int which, std::int64_t b, std::int64_t h, std::int64_t j) const {
    const auto& pages = which == 0 ? kp : vp;
    const std::int64_t dim = which == 0 ? D : Dv;
    return pages[b][j >> shift] + (h * head_tokens + (j & mask)) * dim * elem_size();
  }
  /// The i8 scale of row (b, h, j); nullptr for f32/bf16 caches.
  const float* scale_ptr(int which, std::int64_t b, std::int64_t h, std::int64_t j) const {
    if (!quantised()) return nullptr;
    const auto& pages = which == 0 ? ksp : vsp;
    return pages[b][j >> shift] + h * head_tokens + (j & mask);
  }
};

}  // namespace attn
