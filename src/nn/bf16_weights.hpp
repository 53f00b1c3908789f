#pragma once
// A module's bf16 copy of fp32 weights for the bf16 matmuls, reused while the weights version
// (attn/nn/weight_cache.hpp) stands still and a WeightCacheGuard is alive (docs/nn.md "bf16
// weight copies"). One copy may cover a parameter block that several Linears view (the
// MultiheadAttention's W_q, W_k, W_v, W_o): each cuts its W out of it.

#include <cstdint>
#include <mutex>
#include <vector>

#include "nn/gemm_bf16.hpp"

namespace attn::nn::detail {

/// Whether kept copies are also packed into oneDNN's layout for the forward and dx GEMMs: off,
/// unless ATTN_WEIGHT_CACHE=packed (docs/nn.md: it was not faster overall); tests switch it.
bool weight_packing_enabled();
void set_weight_packing(bool on);

}  // namespace attn::nn::detail

namespace attn::nn {

class Bf16WeightCopy {
 public:
  /// The bf16 rounding of the n fp32 values at `src`, made at the current weights version: the
  /// kept copy when it was made from the same (src, n) at this version, else rounded now and kept.
  /// Only for use while weight_cache_enabled().
  const std::uint16_t* get(const float* src, std::int64_t n);
  /// The matrix at element `offset` of that copy (row-major [rows, cols]: [N, K] when trans_b, else
  /// [K, N]) packed into `layout` (pack_weights_bf16), made once per weights version and kept.
  const std::uint8_t* packed(const float* src, std::int64_t n, std::int64_t offset, std::int64_t rows,
                             std::int64_t cols, bool trans_b, const detail::PackedLayout& layout);

 private:
  struct Packed {
    std::int64_t offset, rows, cols;
    bool trans_b;
    int layout;
    std::uint64_t version;
    std::vector<std::uint8_t> data;
  };
  const std::uint16_t* get_locked(const float* src, std::int64_t n);

  mutable std::mutex mu_;
  std::vector<Packed> packed_;
  std::vector<std::uint16_t> data_;
  const float* src_ = nullptr;
  std::int64_t n_ = 0;
  std::uint64_t version_ = 0;  // 0: no copy (versions start at 1)
};

}  // namespace attn::nn
