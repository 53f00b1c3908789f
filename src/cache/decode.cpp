// decode(): split-KV attention of Nq new query rows against a KvCache (docs/contract.md §12).
//   1. plan: validate, convert q to fp32 once, cut each row's visible keys into chunks of C keys,
//      C = chunk_keys(len_b, D) — a function of len_b and D only (never of capacity, page size or
//      thread count); one work item per (b, kv head, chunk) covering the G·Nq query rows.
//   2. compute: items run on OpenMP threads (any order, any thread), each writing its own
//      partial (acc [R, Dv], SoftmaxState [R]).
//   3. merge: per (b, kv head), partials are merged with SoftmaxState::merge in chunk order, then
//      out = acc / l and lse = m + log l (fully masked rows: 0 and −inf).
// The bits therefore do not depend on the thread count or on the storage layout.

#include "attn/kv_cache.hpp"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>

#include "attn/error.hpp"
#include "cache/decode_plan.hpp"
#include "cpu/isa.hpp"

namespace attn::kv {

namespace {

constexpr std::int64_t kChunkElems = 65536;  // K elements per chunk: 512 keys at D = 128 (≥ ggml's 512-key split)
constexpr std::int64_t kMaxChunks = 256;     // longer rows get longer chunks (bounds the merge work)

/// Keys per split-KV chunk for a row of L keys: a multiple of the 16-key block, depends on (L, D) only.
std::int64_t chunk_keys(std::int64_t L, std::int64_t D) {
  const std::int64_t block = KvCache::Impl::kBlock;
  const std::int64_t base = std::max<std::int64_t>(4 * block, kChunkElems / D / block * block);
  const std::int64_t for_cap = (L + kMaxChunks - 1) / kMaxChunks;
  return std::max(base, (for_cap + block - 1) / block * block);
}

void validate(const DecodeOutputs& o, const TensorView& q, const KvCache& cache, const DecodeParams& params) {
  const std::int64_t B = cache.batch(), Hkv = cache.kv_heads(), D = cache.head_dim(), Dv = cache.v_head_dim();
  ATTN_CHECK(q.rank == 4, shape, "q", "has rank ", q.rank, ", expected rank 4 [B, Hq, Nq, D]");
  ATTN_CHECK(is_floating(q.dtype), dtype, "q", "has dtype ", dtype_name(q.dtype), ", expected a floating dtype (f32, f64, bf16, f16)");
  ATTN_CHECK(q.shape[0] == B, shape, "q.shape[0]", "= ", q.shape[0], ", expected the cache's batch ", B);
  ATTN_CHECK(q.shape[1] >= 1 && q.shape[1] % Hkv == 0, shape, "q.shape[1]", "= ", q.shape[1],
             " query heads, expected a multiple of the cache's ", Hkv, " kv heads");
  ATTN_CHECK(q.shape[3] == D, shape, "q.shape[3]", "= ", q.shape[3], ", expected the cache's head_dim ", D,
             " (head dims of q and k must match)");
  const std::int64_t Hq = q.shape[1], Nq = q.shape[2];
  ATTN_CHECK(o.out.rank == 4 && o.out.shape[0] == B && o.out.shape[1] == Hq && o.out.shape[2] == Nq &&
                 o.out.shape[3] == Dv, shape,
             "out", "has shape ", o.out.shape_string(), ", expected [", B, ", ", Hq, ", ", Nq, ", ", Dv, "]");
  ATTN_CHECK(is_floating(o.out.dtype), dtype, "out", "has dtype ", dtype_name(o.out.dtype), ", expected a floating dtype (f32, f64, bf16, f16)");
  if (o.lse.defined()) {
    ATTN_CHECK(o.lse.rank == 3 && o.lse.shape[0] == B && o.lse.shape[1] == Hq && o.lse.shape[2] == Nq, shape, "lse",
               "has shape ", o.lse.shape_string(), ", expected [", B, ", ", Hq, ", ", Nq, "]");
    ATTN_CHECK(o.lse.dtype == DType::f32, dtype, "lse", "has dtype ", dtype_name(o.lse.dtype), ", expected f32 (decode computes in fp32)");
  }
  ATTN_CHECK(params.alibi_slopes.empty() || static_cast<std::int64_t>(params.alibi_slopes.size()) == Hq, shape,
             "params.alibi_slopes", "has ", params.alibi_slopes.size(), " entries, expected one per query head (Hq = ", Hq, ")");
  ATTN_CHECK(std::isfinite(params.softcap) && params.softcap >= 0.0, value, "params.softcap", "= ", params.softcap,
             ", expected 0 (off) or a finite value > 0");
  ATTN_CHECK(!params.scale || std::isfinite(*params.scale), value, "params.scale", "= ", params.scale.value_or(0.0),
             ", expected a finite value");
  ATTN_CHECK(params.window_left >= -1, value, "params.window_left", "= ", params.window_left,
             ", expected -1 (unbounded) or >= 0");
}

DecodePlan make_plan(const TensorView& q, const KvCache& cache, const DecodeParams& params) {
  DecodePlan pl;
  pl.cache = &cache.impl();
  pl.B = cache.batch();
  pl.Hkv = cache.kv_heads();
  pl.Hq = q.shape[1];
  pl.G = pl.Hq / pl.Hkv;
  pl.Nq = q.shape[2];
  pl.D = cache.head_dim();
  pl.Dv = cache.v_head_dim();
  pl.R = pl.G * pl.Nq;
  pl.scale = static_cast<float>(params.scale.value_or(1.0 / std::sqrt(static_cast<double>(pl.D))));
  pl.softcap = static_cast<float>(params.softcap);
  pl.causal = params.causal;
  pl.window_left = params.window_left;
  for (double s : params.alibi_slopes) pl.alibi.push_back(static_cast<float>(s));
  pl.q.resize(static_cast<std::size_t>(pl.B * pl.Hq * pl.Nq * pl.D));
  float* dst = pl.q.data();
  for (std::int64_t b = 0; b < pl.B; ++b)
    for (std::int64_t h = 0; h < pl.Hq; ++h)
      for (std::int64_t i = 0; i < pl.Nq; ++i, dst += pl.D) {
        const std::int64_t off = q.offset({b, h, i, 0});
        if (q.dtype == DType::f32 && q.strides[3] == 1)
          std::memcpy(dst, q.at(off), static_cast<std::size_t>(pl.D) * sizeof(float));
        else
          for (std::int64_t d = 0; d < pl.D; ++d) dst[d] = static_cast<float>(load_f64(q, off + d * q.strides[3]));
      }
  return pl;
}

void write_row(const DecodeOutputs& o, std::int64_t b, std::int64_t h, std::int64_t i, const float* acc, float inv_l,
               std::int64_t Dv) {
  const std::int64_t off = o.out.offset({b, h, i, 0});
  if (o.out.dtype == DType::f32 && o.out.strides[3] == 1) {
    auto* out = static_cast<float*>(o.out.at(off));
    for (std::int64_t d = 0; d < Dv; ++d) out[d] = acc[d] * inv_l;
  } else {
    for (std::int64_t d = 0; d < Dv; ++d) store_f64(o.out, off + d * o.out.strides[3], acc[d] * inv_l);
  }
}

}  // namespace
}  // namespace attn::kv

namespace attn {

void decode(const DecodeOutputs& outputs, const TensorView& q, const KvCache& cache, const DecodeParams& params) {
  using kv::DecodeItem;
  kv::validate(outputs, q, cache, params);
  const kv::DecodeChunkFn chunk = cpu::active_kernels().decode_chunk;  // the ISA table's entry in use
  const kv::DecodePlan pl = kv::make_plan(q, cache, params);
  const std::int64_t R = pl.R, Dv = pl.Dv, groups = pl.B * pl.Hkv;

  // 1. the chunk grid: items of group (b, kvh) are items[first[g], first[g + 1]), in key order
  std::vector<DecodeItem> items;
  std::vector<std::int64_t> first(static_cast<std::size_t>(groups + 1), 0);
  for (std::int64_t b = 0; b < pl.B; ++b) {
    std::int64_t lo = 0, hi = 0, lo_last = 0, hi_last = 0;
    if (pl.Nq > 0) {
      pl.range(b, 0, &lo, &hi);
      pl.range(b, pl.Nq - 1, &lo_last, &hi_last);
    }
    const std::int64_t C = kv::chunk_keys(cache.length(b), pl.D);
    for (std::int64_t kvh = 0; kvh < pl.Hkv; ++kvh) {
      first[static_cast<std::size_t>(b * pl.Hkv + kvh)] = static_cast<std::int64_t>(items.size());
      if (hi_last > lo)
        for (std::int64_t j0 = lo / C * C; j0 < hi_last; j0 += C) items.push_back({b, kvh, j0, std::min(j0 + C, hi_last)});
    }
  }
  first[static_cast<std::size_t>(groups)] = static_cast<std::int64_t>(items.size());
  const auto n_items = static_cast<std::int64_t>(items.size());
  std::vector<float> acc(static_cast<std::size_t>(n_items * R * Dv));
  std::vector<cpu::SoftmaxState> state(static_cast<std::size_t>(n_items * R));

  const int threads = params.num_threads > 0 ? params.num_threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    kv::DecodeScratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < n_items; ++t)                                     // 2. compute
      chunk(pl, items[static_cast<std::size_t>(t)], acc.data() + t * R * Dv, state.data() + t * R, scratch);
    std::vector<float> total(static_cast<std::size_t>(Dv));
#pragma omp for schedule(static)
    for (std::int64_t gr = 0; gr < groups * R; ++gr) {                             // 3. merge
      const std::int64_t g = gr / R, r = gr % R, b = g / pl.Hkv, kvh = g % pl.Hkv;
      const std::int64_t h = kvh * pl.G + r / pl.Nq, i = r % pl.Nq;
      cpu::SoftmaxState st;
      std::fill(total.begin(), total.end(), 0.0f);
      for (std::int64_t t = first[static_cast<std::size_t>(g)]; t < first[static_cast<std::size_t>(g + 1)]; ++t) {
        float a_self = 0.0f, a_other = 0.0f;
        st.merge(state[static_cast<std::size_t>(t * R + r)], &a_self, &a_other);
        if (a_other == 0.0f) {  // an empty partial: its acc is 0 and adds nothing
          for (float& x : total) x *= a_self;
          continue;
        }
        const float* part = acc.data() + (t * R + r) * Dv;
        for (std::int64_t d = 0; d < Dv; ++d) total[d] = a_self * total[d] + a_other * part[d];
      }
      kv::write_row(outputs, b, h, i, total.data(), st.finalize(), Dv);
      if (outputs.lse.defined()) store_f64(outputs.lse, outputs.lse.offset({b, h, i}), st.lse());
    }
  }
}

void decode(const TensorView& out, const TensorView& q, const KvCache& cache, const DecodeParams& params) {
  decode(DecodeOutputs{out, {}}, q, cache, params);
}

}  // namespace attn
