// The weights version, WeightCacheGuard and the kept bf16 weight copies (nn/bf16_weights.hpp,
// attn/nn/weight_cache.hpp, docs/nn.md "bf16 weight copies").

#include "nn/bf16_weights.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "attn/error.hpp"
#include "attn/nn/weight_cache.hpp"
#include "nn/gemm_bf16.hpp"

namespace attn::nn {
namespace {
std::atomic<std::uint64_t>& version_counter() {
  static std::atomic<std::uint64_t> v{1};
  return v;
}
std::atomic<int>& guards() {
  static std::atomic<int> n{0};
  return n;
}
// ATTN_WEIGHT_CACHE=off (or 0): guards enable nothing, every call rounds W; =packed: kept copies
// are also packed into oneDNN's layout (to time the three).
const char* cache_setting() {
  static const char* e = std::getenv("ATTN_WEIGHT_CACHE");
  return e ? e : "";
}
bool cache_switched_off() {
  static const bool off = std::strcmp(cache_setting(), "off") == 0 || std::strcmp(cache_setting(), "0") == 0;
  return off;
}
std::atomic<bool>& verification() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("ATTN_VERIFY_WEIGHT_CACHE");
    return e != nullptr && std::strcmp(e, "") != 0 && std::strcmp(e, "0") != 0;
  }()};
  return on;
}

// dst[0, n) = bf16(src[0, n)), as rows of kCols so that round_rows_to_bf16 splits them between
// threads, the rest as one row.
void round_block(const float* src, std::int64_t n, std::uint16_t* dst) {
  constexpr std::int64_t kCols = 4096;
  const std::int64_t rows = n / kCols, rest = n - rows * kCols;
  if (rows > 0) detail::round_rows_to_bf16(src, rows, kCols, kCols, dst, kCols);
  if (rest > 0) detail::round_rows_to_bf16(src + rows * kCols, 1, rest, rest, dst + rows * kCols, rest);
}
}  // namespace

void set_weight_cache_verification(bool on) { verification().store(on, std::memory_order_release); }
bool weight_cache_verification() { return verification().load(std::memory_order_acquire); }

std::uint64_t weights_version() { return version_counter().load(std::memory_order_acquire); }
void mark_weights_changed() { version_counter().fetch_add(1, std::memory_order_acq_rel); }
bool weight_cache_enabled() { return guards().load(std::memory_order_acquire) > 0 && !cache_switched_off(); }

WeightCacheGuard::WeightCacheGuard() { guards().fetch_add(1, std::memory_order_acq_rel); }
WeightCacheGuard::~WeightCacheGuard() { guards().fetch_sub(1, std::memory_order_acq_rel); }

namespace detail {

namespace {
std::atomic<bool>& packing() {
  static std::atomic<bool> on{std::strcmp(cache_setting(), "packed") == 0};
  return on;
}
}  // namespace

bool weight_packing_enabled() { return packing().load(std::memory_order_acquire); }
void set_weight_packing(bool on) { packing().store(on, std::memory_order_release); }

}  // namespace detail

const std::uint16_t* Bf16WeightCopy::get(const float* src, std::int64_t n) {
  const std::lock_guard<std::mutex> lock(mu_);
  return get_locked(src, n);
}

const std::uint16_t* Bf16WeightCopy::get_locked(const float* src, std::int64_t n) {
  const std::uint64_t v = weights_version();
  if (version_ == v && src_ == src && n_ == n) {
    if (weight_cache_verification()) {
      std::vector<std::uint16_t> now(static_cast<std::size_t>(n));
      round_block(src, n, now.data());
      const auto diff = std::mismatch(now.begin(), now.end(), data_.begin());
      ATTN_CHECK(diff.first == now.end(), value, "weights",
                 "changed without mark_weights_changed() while a WeightCacheGuard kept their bf16 copy (element ",
                 diff.first - now.begin(), " of ", n,
                 "), expected mark_weights_changed() after writing weights through a parameter pointer");
    }
    return data_.data();
  }
  data_.resize(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)));
  round_block(src, n, data_.data());
  src_ = src;
  n_ = n;
  version_ = v;
  packed_.clear();
  return data_.data();
}

const std::uint8_t* Bf16WeightCopy::packed(const float* src, std::int64_t n, std::int64_t offset, std::int64_t rows,
                                        std::int64_t cols, bool trans_b, const detail::PackedLayout& layout) {
  const std::lock_guard<std::mutex> lock(mu_);
  const std::uint16_t* plain = get_locked(src, n);  // clears packed_ when it re-rounds
  for (const Packed& p : packed_)
    if (p.offset == offset && p.rows == rows && p.cols == cols && p.trans_b == trans_b && p.layout == layout.id &&
        p.version == version_)
      return p.data.data();
  Packed p{offset, rows, cols, trans_b, layout.id, version_, std::vector<std::uint8_t>(layout.bytes)};
  const std::int64_t N = trans_b ? rows : cols, K = trans_b ? cols : rows;
  detail::pack_weights_bf16(trans_b, N, K, plain + offset, cols, layout, p.data.data());
  packed_.push_back(std::move(p));
  return packed_.back().data.data();
}

}  // namespace attn::nn
