// Cross-attention K/V: the encoder output is projected once per source sequence (two GEMMs per
// batch row, on the OpenMP team as the nn modules' are: src/core/blas_gemm.hpp) and stored in a
// read-only KvCache that every decoder step reuses (the "cached encoder projections" of
// encoder-decoder models).
//   K_b [Ns, Hkv·D] = x_b [Ns, E] · W_kᵀ + b_k     V_b [Ns, Hkv·Dv] = x_b · W_vᵀ + b_v
// K_b is [Ns, Hkv, D] in memory (BSHD), appended as the logical [1, Hkv, Ns, D] view.

#include <vector>

#include "attn/error.hpp"
#include "attn/kv_cache.hpp"
#include "core/blas_gemm.hpp"

namespace attn {
namespace {

/// A row-major fp32 copy of a float view of rank r (only when it is not one already).
std::vector<float> dense_f32(const TensorView& t) {
  std::vector<float> r(static_cast<std::size_t>(t.numel()));
  std::int64_t n = 0;
  const std::int64_t s0 = t.rank > 0 ? t.shape[0] : 1;
  const std::int64_t s1 = t.rank > 1 ? t.shape[1] : 1;
  const std::int64_t s2 = t.rank > 2 ? t.shape[2] : 1;
  for (std::int64_t a = 0; a < s0; ++a)
    for (std::int64_t b = 0; b < s1; ++b)
      for (std::int64_t c = 0; c < s2; ++c) {
        std::int64_t off = a * t.strides[0];
        if (t.rank > 1) off += b * t.strides[1];
        if (t.rank > 2) off += c * t.strides[2];
        r[static_cast<std::size_t>(n++)] = static_cast<float>(load_f64(t, off));
      }
  return r;
}

void check_matrix(const TensorView& w, const char* name, std::int64_t rows, std::int64_t E) {
  ATTN_CHECK(w.rank == 2 && w.shape[0] == rows && w.shape[1] == E, shape, name, "has shape ", w.shape_string(),
             ", expected [", rows, ", ", E, "] (kv_heads · head_dim, embed_dim)");
  ATTN_CHECK(is_floating(w.dtype), dtype, name, "has dtype ", dtype_name(w.dtype), ", expected a floating dtype (f32, f64, bf16, f16)");
}

void check_bias(const TensorView& b, const char* name, std::int64_t n) {
  if (!b.defined()) return;
  ATTN_CHECK(b.rank == 1 && b.shape[0] == n, shape, name, "has shape ", b.shape_string(), ", expected [", n, "]");
  ATTN_CHECK(is_floating(b.dtype), dtype, name, "has dtype ", dtype_name(b.dtype), ", expected a floating dtype (f32, f64, bf16, f16)");
}

}  // namespace

KvCache project_cross_kv(const TensorView& x, const TensorView& w_k, const TensorView& w_v, const TensorView& b_k,
                         const TensorView& b_v, const CrossKvSpec& spec, const std::vector<std::int64_t>& src_lengths) {
  ATTN_CHECK(x.rank == 3, shape, "encoder_out", "has rank ", x.rank, ", expected rank 3 [B, Ns, E]");
  ATTN_CHECK(is_floating(x.dtype), dtype, "encoder_out", "has dtype ", dtype_name(x.dtype),
             ", expected a floating dtype (f32, f64, bf16, f16)");
  const std::int64_t B = x.shape[0], Ns = x.shape[1], E = x.shape[2];
  const std::int64_t Hkv = spec.kv_heads, D = spec.head_dim, Dv = spec.v_head_dim > 0 ? spec.v_head_dim : spec.head_dim;
  ATTN_CHECK(Hkv >= 1 && D >= 1, value, "spec", "has kv_heads = ", Hkv, " and head_dim = ", D, ", expected both >= 1");
  check_matrix(w_k, "w_k", Hkv * D, E);
  check_matrix(w_v, "w_v", Hkv * Dv, E);
  check_bias(b_k, "b_k", Hkv * D);
  check_bias(b_v, "b_v", Hkv * Dv);
  ATTN_CHECK(src_lengths.empty() || static_cast<std::int64_t>(src_lengths.size()) == B, shape, "src_lengths",
             "has ", src_lengths.size(), " entries, expected B = ", B);
  for (std::size_t b = 0; b < src_lengths.size(); ++b)
    ATTN_CHECK(src_lengths[b] >= 0 && src_lengths[b] <= Ns, value, "src_lengths", "src_lengths[", b, "] = ", src_lengths[b],
               ", expected a length in [0, ", Ns, "] (Ns)");

  KvCacheConfig cfg;
  cfg.batch = B;
  cfg.kv_heads = Hkv;
  cfg.head_dim = D;
  cfg.v_head_dim = Dv;
  cfg.capacity = Ns;
  cfg.dtype = spec.dtype;
  cfg.layout = spec.layout;
  cfg.page_size = spec.page_size;
  KvCache cache(cfg);

  const std::vector<float> wk = dense_f32(w_k), wv = dense_f32(w_v);
  const std::vector<float> bk = b_k.defined() ? dense_f32(b_k) : std::vector<float>(static_cast<std::size_t>(Hkv * D));
  const std::vector<float> bv = b_v.defined() ? dense_f32(b_v) : std::vector<float>(static_cast<std::size_t>(Hkv * Dv));
  std::vector<float> k(static_cast<std::size_t>(Ns * Hkv * D)), v(static_cast<std::size_t>(Ns * Hkv * Dv));
  for (std::int64_t b = 0; b < B; ++b) {
    TensorView xb = x;  // [Ns, E] of row b
    xb.rank = 2;
    xb.data = x.at(b * x.strides[0]);
    xb.shape = {Ns, E, 0, 0};
    xb.strides = {x.strides[1], x.strides[2], 0, 0};
    const bool dense = x.dtype == DType::f32 && xb.strides[1] == 1 && xb.strides[0] >= E;
    std::vector<float> copy;
    if (!dense) copy = dense_f32(xb);
    const float* a = dense ? static_cast<const float*>(xb.data) : copy.data();
    const std::int64_t lda = dense ? xb.strides[0] : E;
    for (std::int64_t n = 0; n < Ns; ++n) {  // bias first, then C = X·Wᵀ + C
      std::copy(bk.begin(), bk.end(), k.begin() + n * Hkv * D);
      std::copy(bv.begin(), bv.end(), v.begin() + n * Hkv * Dv);
    }
    if (Ns > 0 && E > 0) {
      blas::gemm<float>(false, true, Ns, Hkv * D, E, 1.0f, a, lda, wk.data(), E, 1.0f, k.data(), Hkv * D);
      blas::gemm<float>(false, true, Ns, Hkv * Dv, E, 1.0f, a, lda, wv.data(), E, 1.0f, v.data(), Hkv * Dv);
    }
    const TensorView kb(k.data(), DType::f32, {1, Hkv, Ns, D}, {Ns * Hkv * D, D, Hkv * D, 1});
    const TensorView vb(v.data(), DType::f32, {1, Hkv, Ns, Dv}, {Ns * Hkv * Dv, Dv, Hkv * Dv, 1});
    const std::int64_t len = src_lengths.empty() ? Ns : src_lengths[static_cast<std::size_t>(b)];
    cache.append(kb, vb, {b}, {len});
  }
  cache.set_read_only();
  return cache;
}

}  // namespace attn
