#pragma once
// The decode plan shared by the driver (decode.cpp) and the per-ISA chunk kernels (decode_*.cpp).
// A work item is one split-KV chunk: batch row b, kv head, keys [j0, j1), covering all R = G·Nq
// query rows of the group (row r = g·Nq + i is query position i of head kvh·G + g), so each K/V
// row is read once per group (docs/architecture.md §7). The chunk grid depends only on len_b and D.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cache/kv_cache_impl.hpp"
#include "cpu/softmax_state.hpp"
#include "variants/window.hpp"

namespace attn::kv {

struct DecodePlan {
  const KvCache::Impl* cache = nullptr;
  std::int64_t B = 0, Hq = 0, Hkv = 0, G = 1, Nq = 0, D = 0, Dv = 0, R = 0;
  float scale = 1.0f;
  float softcap = 0.0f;         // 0 = off
  bool causal = true;
  std::int64_t window_left = -1;
  std::vector<float> alibi;     // per query head, empty = off
  std::vector<float> q;         // [B, Hq, Nq, D] fp32, row-major

  const float* q_row(std::int64_t b, std::int64_t h, std::int64_t i) const {
    return q.data() + ((b * Hq + h) * Nq + i) * D;
  }
  /// Keys [lo, hi) visible to query position i of row b by causality, window and length: the
  /// window rule of variants/window.hpp with the rows bottom-right aligned (off = len_b − Nq).
  void range(std::int64_t b, std::int64_t i, std::int64_t* lo, std::int64_t* hi) const {
    const std::int64_t L = cache->len[static_cast<std::size_t>(b)];
    const variants::RowRange r = variants::window_range(Nq, L, L - Nq, window_left, causal ? 0 : -1, i);
    *lo = r.lo;
    *hi = r.hi;
  }
};

struct DecodeItem {
  std::int64_t b = 0, kvh = 0, j0 = 0, j1 = 0;
};

/// Per-thread scratch of the chunk kernels.
struct DecodeScratch {
  std::vector<float> s;                 // [R, 16] scores, then probabilities, of one key block
  std::vector<std::int64_t> lo, hi;     // per row r: visible keys
};

/// Computes one chunk: acc [R, Dv] = Σ_j exp(s_rj − m_r)·v_j (unnormalised) and state[r] = (m_r, l_r).
using DecodeChunkFn = void (*)(const DecodePlan&, const DecodeItem&, float* acc, cpu::SoftmaxState* state,
                               DecodeScratch&);

}  // namespace attn::kv
