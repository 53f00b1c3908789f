#pragma once
/// KV cache and decode (docs/contract.md §12). One KvCache per layer holds, for each of B batch rows, the
/// keys [Hkv, len_b, D] and values [Hkv, len_b, Dv] seen so far, in contiguous storage
/// [B, Hkv, capacity, D] or in fixed-size pages from a pool (a block table per row, vLLM-style).
/// Storage types: f32, bf16 (rounded to nearest even on append) and i8 (symmetric per-token,
/// per-head quantisation on append: scale = max|x| / 127, x ≈ scale · round(x / scale)).
/// decode() attends Nq ≥ 1 new query rows — whose K/V were appended first — to every row's cache
/// with bottom-right alignment: query r of row b sees keys j ≤ len_b − Nq + r (and j < len_b).

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "attn/tensor.hpp"

namespace attn {

/// Where the cached K/V live: one [B, Hkv, capacity, D] block, or pages from a pool.
enum class KvLayout { contiguous, paged };
const char* kv_layout_name(KvLayout layout);

/// Shape and storage of a cache.
struct KvCacheConfig {
  std::int64_t batch = 1;        ///< B
  std::int64_t kv_heads = 1;     ///< Hkv
  std::int64_t head_dim = 0;     ///< D
  std::int64_t v_head_dim = 0;   ///< Dv (0 = D)
  std::int64_t capacity = 0;     ///< tokens per batch row
  DType dtype = DType::f32;      ///< f32, bf16 or i8
  KvLayout layout = KvLayout::contiguous;
  std::int64_t page_size = 64;   ///< tokens per page (paged); a power of two ≥ 16
  /// Pages in the pool (paged); 0 = batch · ceil(capacity / page_size), enough for every row full.
  /// A smaller pool is shared by the rows first come, first served.
  std::int64_t num_pages = 0;
  /// Appending past the capacity (or past the pool) grows the cache instead of throwing.
  bool growable = false;
};

/// The K/V cache of one attention layer.
class KvCache {
 public:
  /// Throws attn::Error naming the field for an invalid config (dtype, page size, sizes < 0).
  explicit KvCache(const KvCacheConfig& config);
  ~KvCache();
  KvCache(KvCache&&) noexcept;
  KvCache& operator=(KvCache&&) noexcept;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  const KvCacheConfig& config() const;
  std::int64_t batch() const;
  std::int64_t kv_heads() const;
  std::int64_t head_dim() const;
  std::int64_t v_head_dim() const;
  /// Tokens per row that fit without growing (grows with a growable cache).
  std::int64_t capacity() const;
  /// len_b: tokens cached for batch row b.
  std::int64_t length(std::int64_t b) const;
  /// len_b for every row (size B).
  const std::vector<std::int64_t>& lengths() const;

  /// Appends new tokens: k [n, Hkv, N, D], v [n, Hkv, N, Dv] (any float dtype, any strides).
  /// Entry e goes to batch row rows[e] (rows empty: n = B and entry e is row e) and adds
  /// counts[e] ≤ N tokens, its first counts[e] positions (counts empty: N each). Nothing is
  /// written when the call throws (mismatched heads/dims, unknown or repeated rows, capacity or
  /// pool exhausted on a non-growable cache, read-only cache).
  void append(const TensorView& k, const TensorView& v, const std::vector<std::int64_t>& rows = {},
              const std::vector<std::int64_t>& counts = {});
  /// Keeps the first `length` tokens of row b (length ≤ len_b); whole pages past it go back to the pool.
  void trim(std::int64_t b, std::int64_t length);
  /// Empties row b (its pages go back to the pool).
  void reset(std::int64_t b);
  /// Empties every row.
  void reset();

  /// Forbids append/trim/reset from now on (cross-attention caches).
  void set_read_only();
  bool read_only() const;

  /// Paged caches: pages in the pool, pages not held by any row, and row b's block table (page
  /// ids in token order). Contiguous caches: 0, 0 and an empty table.
  std::int64_t pages_total() const;
  std::int64_t pages_free() const;
  std::vector<std::int32_t> block_table(std::int64_t b) const;

  /// Cached element (fp32, dequantised) of K (which = 0) or V (which = 1) at [b, h, j, d], j < len_b.
  float element(int which, std::int64_t b, std::int64_t h, std::int64_t j, std::int64_t d) const;
  /// The per-token scale of an i8 cache (1 for f32/bf16).
  float scale(int which, std::int64_t b, std::int64_t h, std::int64_t j) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// Masks and score modifiers of a decode call (docs/contract.md §4 pipeline, bottom-right alignment).
struct DecodeParams {
  std::optional<double> scale;    ///< default 1/sqrt(D)
  /// true: query r of row b sees keys j ≤ len_b − Nq + r. false: every cached key (cross-attention).
  bool causal = true;
  std::int64_t window_left = -1;  ///< keys j < len_b − Nq + r − window_left are hidden; -1 = unbounded
  std::vector<double> alibi_slopes;  ///< one per query head (size Hq): s -= slope_h·|len_b − Nq + r − j|
  double softcap = 0.0;           ///< c > 0: s -> c·tanh(s / c)
  int num_threads = 0;            ///< 0 = all (the result does not depend on it)
};

/// Outputs of decode: out [B, Hq, Nq, Dv] (any float dtype, any strides), lse [B, Hq, Nq] f32 (optional).
struct DecodeOutputs {
  TensorView out;
  TensorView lse;
};

/// Attention of q [B, Hq, Nq, D] (any float dtype, any strides) against the cache, whose rows
/// already hold these Nq tokens' K/V. Hq must be a multiple of Hkv (head h uses kv head h / (Hq/Hkv)).
/// Rows with no visible key give out = 0, lse = −inf. Bitwise identical across thread counts and
/// between contiguous and paged caches holding the same tokens.
void decode(const DecodeOutputs& outputs, const TensorView& q, const KvCache& cache, const DecodeParams& params = {});
/// decode without lse.
void decode(const TensorView& out, const TensorView& q, const KvCache& cache, const DecodeParams& params = {});

/// Storage of a cross-attention cache.
struct CrossKvSpec {
  std::int64_t kv_heads = 1;     ///< Hkv
  std::int64_t head_dim = 0;     ///< D
  std::int64_t v_head_dim = 0;   ///< Dv (0 = D)
  DType dtype = DType::f32;
  KvLayout layout = KvLayout::contiguous;
  std::int64_t page_size = 64;
};

/// Cross-attention K/V, projected once per source sequence and reused at every decoder step:
/// K = x·W_kᵀ + b_k, V = x·W_vᵀ + b_v for the encoder output x [B, Ns, E] (any float dtype),
/// W_k [Hkv·D, E], W_v [Hkv·Dv, E] (nn.Linear weights), b_k [Hkv·D], b_v [Hkv·Dv] (optional).
/// Row b keeps its first src_lengths[b] tokens (empty: Ns). Returns a read-only cache of
/// capacity Ns; decode it with DecodeParams::causal = false.
KvCache project_cross_kv(const TensorView& encoder_out, const TensorView& w_k, const TensorView& w_v,
                         const TensorView& b_k, const TensorView& b_v, const CrossKvSpec& spec,
                         const std::vector<std::int64_t>& src_lengths = {});

}  // namespace attn
