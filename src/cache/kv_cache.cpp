// KvCache: contiguous and paged K/V storage with append / trim / reset (docs/contract.md §12).
// Appends are validated completely before anything is written, so a throwing call leaves the
// cache as it was. i8 storage quantises each (token, head) row symmetrically on append:
//   scale = max_d |x_d| / 127,  x_d ≈ scale · clamp(round(x_d / scale), −127, 127)
// so |x_d − dequant(x_d)| ≤ scale / 2 (round to nearest; no clamping happens since |x_d/scale| ≤ 127).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "attn/error.hpp"
#include "cache/kv_cache_impl.hpp"
#include "core/dtype_visit.hpp"
#include "core/half.hpp"

namespace attn {

const char* kv_layout_name(KvLayout layout) { return layout == KvLayout::paged ? "paged" : "contiguous"; }

namespace {

constexpr float kInt8Max = 127.0f;

/// n elements of a float view starting at element offset `off` with element stride `stride`, as fp32.
void read_f32(const TensorView& t, std::int64_t off, std::int64_t stride, std::int64_t n, float* dst) {
  if (stride == 1 && t.dtype == DType::f32) {
    std::memcpy(dst, t.at(off), static_cast<std::size_t>(n) * sizeof(float));
  } else if (stride == 1 && t.dtype == DType::bf16) {
    const auto* h = static_cast<const std::uint16_t*>(t.at(off));
    for (std::int64_t d = 0; d < n; ++d) dst[d] = core::bf16_to_f32(h[d]);
  } else {
    for (std::int64_t d = 0; d < n; ++d) dst[d] = static_cast<float>(load_f64(t, off + d * stride));
  }
}

/// Stores one fp32 row into cache storage of the given dtype (i8: quantised, scale to *scale).
void write_row(const float* x, std::int64_t n, DType dtype, void* dst, float* scale) {
  core::visit_dtype<DType::f32, DType::bf16, DType::i8>(dtype, "cache dtype", [&](auto t) {
    constexpr DType kD = decltype(t)::value;
    if constexpr (kD == DType::f32) {
      std::memcpy(dst, x, static_cast<std::size_t>(n) * sizeof(float));
    } else if constexpr (kD == DType::bf16) {
      auto* h = static_cast<std::uint16_t*>(dst);
      for (std::int64_t d = 0; d < n; ++d) h[d] = core::f32_to_bf16(x[d]);
    } else {
      float amax = 0.0f;
      for (std::int64_t d = 0; d < n; ++d) amax = std::max(amax, std::abs(x[d]));
      if (std::isnan(amax)) amax = std::numeric_limits<float>::quiet_NaN();
      for (std::int64_t d = 0; d < n && !std::isnan(amax); ++d)
        if (std::isnan(x[d])) amax = std::numeric_limits<float>::quiet_NaN();
      const float s = amax / kInt8Max;
      *scale = s;
      auto* q = static_cast<std::int8_t*>(dst);
      const bool finite_scale = s > 0.0f && std::isfinite(s);
      for (std::int64_t d = 0; d < n; ++d) {
        const float r = finite_scale ? std::nearbyint(x[d] / s) : 0.0f;
        q[d] = std::isfinite(r) ? static_cast<std::int8_t>(std::clamp(r, -kInt8Max, kInt8Max)) : std::int8_t{0};
      }
    }
  });
}

/// Contiguous storage: reallocates to `new_cap` tokens per row, keeping the cached tokens.
void grow_contiguous(KvCache::Impl& m, std::int64_t new_cap) {
  const DType dt = m.cfg.dtype;
  Tensor k(dt, {m.B, m.Hkv, new_cap, m.D}), v(dt, {m.B, m.Hkv, new_cap, m.Dv}), ks, vs;
  if (m.quantised()) {
    ks = Tensor(DType::f32, {m.B, m.Hkv, new_cap});
    vs = Tensor(DType::f32, {m.B, m.Hkv, new_cap});
  }
  const auto es = static_cast<std::size_t>(m.elem_size());
  for (std::int64_t b = 0; b < m.B && m.cap > 0; ++b)
    for (std::int64_t h = 0; h < m.Hkv; ++h) {
      const auto n = static_cast<std::size_t>(m.len[static_cast<std::size_t>(b)]);
      const std::int64_t src = (b * m.Hkv + h) * m.cap, dst = (b * m.Hkv + h) * new_cap;
      std::memcpy(k.ptr<char>() + dst * m.D * es, m.k_buf.ptr<char>() + src * m.D * es, n * m.D * es);
      std::memcpy(v.ptr<char>() + dst * m.Dv * es, m.v_buf.ptr<char>() + src * m.Dv * es, n * m.Dv * es);
      if (m.quantised()) {
        std::memcpy(ks.ptr<float>() + dst, m.ks_buf.ptr<float>() + src, n * sizeof(float));
        std::memcpy(vs.ptr<float>() + dst, m.vs_buf.ptr<float>() + src, n * sizeof(float));
      }
    }
  m.k_buf = std::move(k);
  m.v_buf = std::move(v);
  m.ks_buf = std::move(ks);
  m.vs_buf = std::move(vs);
  m.cap = new_cap;
  m.head_tokens = new_cap;
  for (std::int64_t b = 0; b < m.B; ++b) {
    const auto i = static_cast<std::size_t>(b);
    const std::int64_t base = b * m.Hkv * new_cap;
    m.kp[i] = {m.k_buf.ptr<const char>() + base * m.D * static_cast<std::int64_t>(es)};
    m.vp[i] = {m.v_buf.ptr<const char>() + base * m.Dv * static_cast<std::int64_t>(es)};
    if (m.quantised()) {
      m.ksp[i] = {m.ks_buf.ptr<const float>() + base};
      m.vsp[i] = {m.vs_buf.ptr<const float>() + base};
    }
  }
}

/// Paged storage: adds `n` pages to the pool (growable caches).
void add_pages(KvCache::Impl& m, std::int64_t n) {
  const std::int64_t P = m.cfg.page_size;
  for (std::int64_t i = 0; i < n; ++i) {
    m.free_pages.insert(m.free_pages.begin(), static_cast<std::int32_t>(m.k_pg.size()));
    m.k_pg.emplace_back(m.cfg.dtype, std::initializer_list<std::int64_t>{m.Hkv, P, m.D});
    m.v_pg.emplace_back(m.cfg.dtype, std::initializer_list<std::int64_t>{m.Hkv, P, m.Dv});
    if (m.quantised()) {
      m.ks_pg.emplace_back(DType::f32, std::initializer_list<std::int64_t>{m.Hkv, P});
      m.vs_pg.emplace_back(DType::f32, std::initializer_list<std::int64_t>{m.Hkv, P});
    }
  }
}

/// Paged storage: row b's page pointers from its block table.
void refresh_row(KvCache::Impl& m, std::size_t b) {
  m.kp[b].clear();
  m.vp[b].clear();
  m.ksp[b].clear();
  m.vsp[b].clear();
  for (std::int32_t id : m.table[b]) {
    const auto p = static_cast<std::size_t>(id);
    m.kp[b].push_back(m.k_pg[p].ptr<const char>());
    m.vp[b].push_back(m.v_pg[p].ptr<const char>());
    if (m.quantised()) {
      m.ksp[b].push_back(m.ks_pg[p].ptr<const float>());
      m.vsp[b].push_back(m.vs_pg[p].ptr<const float>());
    }
  }
}

/// Paged storage: keeps the pages that hold row b's first `tokens` tokens, frees the rest.
void release_pages(KvCache::Impl& m, std::size_t b, std::int64_t tokens) {
  const auto keep = static_cast<std::size_t>((tokens + m.cfg.page_size - 1) / m.cfg.page_size);
  auto& t = m.table[b];
  while (t.size() > keep) {
    m.free_pages.push_back(t.back());
    t.pop_back();
  }
  refresh_row(m, b);
}

}  // namespace

KvCache::KvCache(const KvCacheConfig& config) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = config;
  if (m.cfg.v_head_dim == 0) m.cfg.v_head_dim = m.cfg.head_dim;
  const KvCacheConfig& c = m.cfg;
  ATTN_CHECK(c.dtype == DType::f32 || c.dtype == DType::bf16 || c.dtype == DType::i8, dtype, "config.dtype",
             "has dtype ", dtype_name(c.dtype), ", expected a cache storage type (f32, bf16 or i8)");
  ATTN_CHECK(c.batch >= 0, value, "config.batch", "= ", c.batch, ", expected >= 0");
  ATTN_CHECK(c.kv_heads >= 1, value, "config.kv_heads", "= ", c.kv_heads, ", expected >= 1");
  ATTN_CHECK(c.head_dim >= 1, value, "config.head_dim", "= ", c.head_dim, ", expected >= 1");
  ATTN_CHECK(c.v_head_dim >= 1, value, "config.v_head_dim", "= ", c.v_head_dim, ", expected >= 1 (or 0 = head_dim)");
  ATTN_CHECK(c.capacity >= 0, value, "config.capacity", "= ", c.capacity, ", expected >= 0");
  m.B = c.batch;
  m.Hkv = c.kv_heads;
  m.D = c.head_dim;
  m.Dv = c.v_head_dim;
  m.len.assign(static_cast<std::size_t>(m.B), 0);
  m.kp.resize(static_cast<std::size_t>(m.B));
  m.vp.resize(m.kp.size());
  m.ksp.resize(m.kp.size());
  m.vsp.resize(m.kp.size());
  if (c.layout == KvLayout::paged) {
    const std::int64_t P = c.page_size;
    ATTN_CHECK(P >= Impl::kBlock && std::has_single_bit(static_cast<std::uint64_t>(P)), value, "config.page_size",
               "= ", P, ", expected a power of two ≥ ", Impl::kBlock);
    ATTN_CHECK(c.num_pages >= 0, value, "config.num_pages", "= ", c.num_pages, ", expected >= 0");
    m.cap = c.capacity;
    m.head_tokens = P;
    m.shift = std::countr_zero(static_cast<std::uint64_t>(P));
    m.mask = P - 1;
    m.table.resize(static_cast<std::size_t>(m.B));
    const std::int64_t pages = c.num_pages > 0 ? c.num_pages : m.B * ((c.capacity + P - 1) / P);
    for (std::int64_t i = 0; i < pages; ++i) {
      m.k_pg.emplace_back(c.dtype, std::initializer_list<std::int64_t>{m.Hkv, P, m.D});
      m.v_pg.emplace_back(c.dtype, std::initializer_list<std::int64_t>{m.Hkv, P, m.Dv});
      if (m.quantised()) {
        m.ks_pg.emplace_back(DType::f32, std::initializer_list<std::int64_t>{m.Hkv, P});
        m.vs_pg.emplace_back(DType::f32, std::initializer_list<std::int64_t>{m.Hkv, P});
      }
    }
    for (std::int64_t i = pages - 1; i >= 0; --i) m.free_pages.push_back(static_cast<std::int32_t>(i));
  } else {
    grow_contiguous(m, c.capacity);
  }
}

KvCache::~KvCache() = default;
KvCache::KvCache(KvCache&&) noexcept = default;
KvCache& KvCache::operator=(KvCache&&) noexcept = default;

const KvCacheConfig& KvCache::config() const { return impl_->cfg; }
std::int64_t KvCache::batch() const { return impl_->B; }
std::int64_t KvCache::kv_heads() const { return impl_->Hkv; }
std::int64_t KvCache::head_dim() const { return impl_->D; }
std::int64_t KvCache::v_head_dim() const { return impl_->Dv; }
std::int64_t KvCache::capacity() const { return impl_->cap; }
const std::vector<std::int64_t>& KvCache::lengths() const { return impl_->len; }
std::int64_t KvCache::length(std::int64_t b) const {
  ATTN_CHECK(b >= 0 && b < impl_->B, value, "b", "= ", b, ", expected a batch row in [0, ", impl_->B, ")");
  return impl_->len[static_cast<std::size_t>(b)];
}
void KvCache::set_read_only() { impl_->ro = true; }
bool KvCache::read_only() const { return impl_->ro; }
std::int64_t KvCache::pages_total() const { return static_cast<std::int64_t>(impl_->k_pg.size()); }
std::int64_t KvCache::pages_free() const { return static_cast<std::int64_t>(impl_->free_pages.size()); }
std::vector<std::int32_t> KvCache::block_table(std::int64_t b) const {
  ATTN_CHECK(b >= 0 && b < impl_->B, value, "b", "= ", b, ", expected a batch row in [0, ", impl_->B, ")");
  return impl_->paged() ? impl_->table[static_cast<std::size_t>(b)] : std::vector<std::int32_t>{};
}

float KvCache::element(int which, std::int64_t b, std::int64_t h, std::int64_t j, std::int64_t d) const {
  const Impl& m = *impl_;
  ATTN_CHECK(b >= 0 && b < m.B && h >= 0 && h < m.Hkv && j >= 0 && j < m.len[static_cast<std::size_t>(b)] && d >= 0 &&
                 d < (which == 0 ? m.D : m.Dv), value,
             "index", "(", b, ", ", h, ", ", j, ", ", d, ") is outside the cached tokens, expected b < B, h < Hkv, j < len_b, d < D (or Dv)");
  const char* r = m.row(which, b, h, j);
  return core::visit_dtype<DType::f32, DType::bf16, DType::i8>(m.cfg.dtype, "cache dtype", [&](auto t) {
    using E = core::Elem<decltype(t)::value>;
    const float x = E::to_f32(reinterpret_cast<const typename E::T*>(r)[d]);
    return decltype(t)::value == DType::i8 ? *m.scale_ptr(which, b, h, j) * x : x;
  });
}

float KvCache::scale(int which, std::int64_t b, std::int64_t h, std::int64_t j) const {
  (void)element(which, b, h, j, 0);  // bounds check
  const float* s = impl_->scale_ptr(which, b, h, j);
  return s ? *s : 1.0f;
}

void KvCache::append(const TensorView& k, const TensorView& v, const std::vector<std::int64_t>& rows,
                     const std::vector<std::int64_t>& counts) {
  Impl& m = *impl_;
  ATTN_CHECK(!m.ro, unsupported, "cache", "is read-only (a cross-attention cache), expected a writable cache for append");
  ATTN_CHECK(k.rank == 4, shape, "k", "has rank ", k.rank, ", expected rank 4 [n, Hkv, N, D]");
  ATTN_CHECK(v.rank == 4, shape, "v", "has rank ", v.rank, ", expected rank 4 [n, Hkv, N, Dv]");
  ATTN_CHECK(is_floating(k.dtype), dtype, "k", "has dtype ", dtype_name(k.dtype), ", expected a floating dtype (f32, f64, bf16, f16)");
  ATTN_CHECK(is_floating(v.dtype), dtype, "v", "has dtype ", dtype_name(v.dtype), ", expected a floating dtype (f32, f64, bf16, f16)");
  const std::int64_t n = k.shape[0], N = k.shape[2];
  ATTN_CHECK(k.shape[1] == m.Hkv, shape, "k.shape[1]", "= ", k.shape[1], ", expected the cache's ", m.Hkv, " kv heads");
  ATTN_CHECK(k.shape[3] == m.D, shape, "k.shape[3]", "= ", k.shape[3], ", expected the cache's head_dim ", m.D);
  ATTN_CHECK(v.shape[0] == n, shape, "v.shape[0]", "= ", v.shape[0], ", expected ", n, " = k.shape[0]");
  ATTN_CHECK(v.shape[1] == m.Hkv, shape, "v.shape[1]", "= ", v.shape[1], ", expected the cache's ", m.Hkv, " kv heads");
  ATTN_CHECK(v.shape[2] == N, shape, "v.shape[2]", "= ", v.shape[2], ", expected ", N, " = k.shape[2]");
  ATTN_CHECK(v.shape[3] == m.Dv, shape, "v.shape[3]", "= ", v.shape[3], ", expected the cache's v_head_dim ", m.Dv);
  if (rows.empty())
    ATTN_CHECK(n == m.B, shape, "k.shape[0]", "= ", n, ", expected the cache's batch ", m.B,
               " (pass `rows` to append to some rows only)");
  else
    ATTN_CHECK(static_cast<std::int64_t>(rows.size()) == n, shape, "rows", "has ", rows.size(),
               " entries, expected ", n, " = k.shape[0]");
  ATTN_CHECK(counts.empty() || static_cast<std::int64_t>(counts.size()) == n, shape, "counts", "has ", counts.size(),
             " entries, expected ", n, " = k.shape[0]");
  std::vector<char> seen(static_cast<std::size_t>(m.B), 0);
  std::int64_t need_cap = m.cap, need_pages = 0;
  for (std::int64_t e = 0; e < n; ++e) {
    const std::int64_t b = rows.empty() ? e : rows[static_cast<std::size_t>(e)];
    const std::int64_t c = counts.empty() ? N : counts[static_cast<std::size_t>(e)];
    ATTN_CHECK(b >= 0 && b < m.B, value, "rows", "rows[", e, "] = ", b, " is not a batch row of the cache, expected one in [0, ", m.B, ")");
    ATTN_CHECK(!seen[static_cast<std::size_t>(b)], value, "rows", "names batch row ", b, " twice, expected each row at most once");
    seen[static_cast<std::size_t>(b)] = 1;
    ATTN_CHECK(c >= 0 && c <= N, value, "counts", "counts[", e, "] = ", c, ", expected a count in [0, ", N, "] (N = ", N, ")");
    const std::int64_t len = m.len[static_cast<std::size_t>(b)], after = len + c;
    ATTN_CHECK(after <= m.cap || m.cfg.growable, value, "k",
               "appends ", c, " tokens to batch row ", b, ", which holds ", len, ", and exceeds the capacity ", m.cap,
               ", expected at most ", m.cap - len, " (make the cache growable or trim it)");
    need_cap = std::max(need_cap, after);
    if (m.paged()) {
      const std::int64_t P = m.cfg.page_size;
      need_pages += (after + P - 1) / P - static_cast<std::int64_t>(m.table[static_cast<std::size_t>(b)].size());
    }
  }
  if (m.paged()) {
    const auto free_now = static_cast<std::int64_t>(m.free_pages.size());
    ATTN_CHECK(need_pages <= free_now || m.cfg.growable, value, "k", "needs ", need_pages,
               " new pages, but the page pool is exhausted, expected at most the ", free_now, " of ", m.k_pg.size(),
               " pages that are free (make the cache growable or give it more pages)");
    if (need_pages > free_now) add_pages(m, std::max(need_pages - free_now, static_cast<std::int64_t>(m.k_pg.size())));
    if (need_cap > m.cap) m.cap = std::max(need_cap, 2 * m.cap);
  } else if (need_cap > m.cap) {
    grow_contiguous(m, std::max(need_cap, 2 * m.cap));
  }

  std::vector<float> row(static_cast<std::size_t>(std::max(m.D, m.Dv)));
  for (std::int64_t e = 0; e < n; ++e) {
    const std::int64_t b = rows.empty() ? e : rows[static_cast<std::size_t>(e)];
    const std::int64_t c = counts.empty() ? N : counts[static_cast<std::size_t>(e)];
    const auto bi = static_cast<std::size_t>(b);
    const std::int64_t len = m.len[bi];
    if (m.paged()) {
      const std::int64_t P = m.cfg.page_size;
      while (static_cast<std::int64_t>(m.table[bi].size()) * P < len + c) {
        m.table[bi].push_back(m.free_pages.back());
        m.free_pages.pop_back();
      }
      refresh_row(m, bi);
    }
    for (std::int64_t h = 0; h < m.Hkv; ++h)
      for (std::int64_t t = 0; t < c; ++t) {
        const std::int64_t j = len + t;
        read_f32(k, k.offset({e, h, t, 0}), k.strides[3], m.D, row.data());
        write_row(row.data(), m.D, m.cfg.dtype, const_cast<char*>(m.row(0, b, h, j)),
                  const_cast<float*>(m.scale_ptr(0, b, h, j)));
        read_f32(v, v.offset({e, h, t, 0}), v.strides[3], m.Dv, row.data());
        write_row(row.data(), m.Dv, m.cfg.dtype, const_cast<char*>(m.row(1, b, h, j)),
                  const_cast<float*>(m.scale_ptr(1, b, h, j)));
      }
    m.len[bi] = len + c;
  }
}

void KvCache::trim(std::int64_t b, std::int64_t length) {
  Impl& m = *impl_;
  ATTN_CHECK(!m.ro, unsupported, "cache", "is read-only (a cross-attention cache), expected a writable cache for trim");
  ATTN_CHECK(b >= 0 && b < m.B, value, "b", "= ", b, ", expected a batch row in [0, ", m.B, ")");
  const auto bi = static_cast<std::size_t>(b);
  ATTN_CHECK(length >= 0 && length <= m.len[bi], value, "length", "= ", length, ", expected a length in [0, ", m.len[bi], "] (len_", b, " = ", m.len[bi], ")");
  m.len[bi] = length;
  if (m.paged()) release_pages(m, bi, length);
}

void KvCache::reset(std::int64_t b) { trim(b, 0); }

void KvCache::reset() {
  for (std::int64_t b = 0; b < impl_->B; ++b) reset(b);
}

}  // namespace attn
