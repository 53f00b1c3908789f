#pragma once
// Helpers for the KV-cache and decode tests: caches filled from q/k/v test tensors in ragged
// pieces, the reference SDPA call that decode must match, and output buffers.

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "attn/error.hpp"
#include "attn/kv_cache.hpp"
#include "attn/sdpa.hpp"
#include "common/test_util.hpp"

namespace attn::test {

/// Row b of a [B, H, N, D] view as a [1, H, n, D] view starting at token t0.
inline TensorView batch_row(const TensorView& t, std::int64_t b, std::int64_t t0, std::int64_t n) {
  TensorView r = t;
  r.data = t.at(b * t.strides[0] + t0 * t.strides[2]);
  r.shape[0] = 1;
  r.shape[2] = n;
  return r;
}

/// Rounds every element of a view to `dtype` (f32 or bf16) in place, so that a cache of that
/// dtype and the reference see the same numbers.
inline void round_to(const TensorView& t, DType dtype) {
  for_each_element(t, [&](const auto&, std::int64_t off) {
    const double x = load_f64(t, off);
    store_f64(t, off, dtype == DType::bf16 ? bf16_to_f32(f32_to_bf16(static_cast<float>(x))) : static_cast<float>(x));
  });
}

/// Appends tokens [0, lens[b]) of k/v row b to the cache: first one call for all rows (up to 5
/// tokens each, ragged counts), then per-row calls in pieces of varying size.
inline void fill_cache(KvCache& cache, const TensorView& k, const TensorView& v, const std::vector<std::int64_t>& lens) {
  const std::int64_t B = k.shape[0];
  std::vector<std::int64_t> first(static_cast<std::size_t>(B));
  for (std::int64_t b = 0; b < B; ++b) first[b] = std::min<std::int64_t>(lens[b], (b % 3) + 3);
  const std::int64_t n0 = *std::max_element(first.begin(), first.end());
  TensorView k0 = k, v0 = v;
  k0.shape[2] = v0.shape[2] = n0;
  cache.append(k0, v0, {}, first);
  for (std::int64_t b = B - 1; b >= 0; --b) {
    std::int64_t t = first[b], piece = 1;
    while (t < lens[b]) {
      const std::int64_t n = std::min(piece, lens[b] - t);
      cache.append(batch_row(k, b, t, n), batch_row(v, b, t, n), {b});
      t += n;
      piece = piece * 3 + 1;
    }
  }
}

/// The reference SDPA call that decode(q, cache, dp) must equal (bottom-right, k_lengths = lens).
inline SdpaParams reference_params(const DecodeParams& dp, const std::vector<std::int64_t>& lens) {
  SdpaParams p;
  p.backend = Backend::reference;
  p.scale = dp.scale;
  p.mask.causal = dp.causal;
  p.mask.window_left = dp.window_left;
  p.mask.alignment = Alignment::bottom_right;
  p.mask.k_lengths = lens;
  p.mask.alibi_slopes = dp.alibi_slopes;
  p.mask.softcap = dp.softcap;
  return p;
}

/// decode outputs: out [B, Hq, Nq, Dv] and lse [B, Hq, Nq], f32, in NaN guard memory.
struct DecodeOut {
  GuardedTensor out, lse;
  DecodeOutputs views() const { return {out.view, lse.view}; }
  /// Bitwise equality of out and lse.
  bool same_bits(const DecodeOut& o) const {
    return std::memcmp(out.mem.storage(), o.out.mem.storage(), static_cast<std::size_t>(out.mem.storage_elems()) * 4) == 0 &&
           std::memcmp(lse.mem.storage(), o.lse.mem.storage(), static_cast<std::size_t>(lse.mem.storage_elems()) * 4) == 0;
  }
};

inline DecodeOut run_decode(const TensorView& q, const KvCache& cache, const DecodeParams& dp) {
  DecodeOut o;
  o.out = make_tensor4(DType::f32, q.shape[0], q.shape[1], q.shape[2], cache.v_head_dim());
  o.lse = make_tensor(DType::f32, {q.shape[0], q.shape[1], q.shape[2]});
  decode(o.views(), q, cache, dp);
  return o;
}

/// Largest |a − b| over lse views, with −inf == −inf.
inline double lse_diff(const TensorView& a, const TensorView& b) {
  double m = 0.0;
  for_each_element(a, [&](const auto& idx, std::int64_t off) {
    const double x = load_f64(a, off), y = at(b, idx[0], idx[1], idx[2]);
    if (x == y) return;
    m = std::max(m, std::isnan(x - y) ? kInf : std::abs(x - y));
  });
  return m;
}

/// Expects `f` to throw attn::Error naming `argument`, in the format of include/attn/error.hpp
/// ("<argument>: <seen>, expected <expected>..."), with `fragment` somewhere in the message.
inline void expect_error(const std::function<void()>& f, const std::string& argument, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one about " << argument;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.argument(), argument) << what;
    EXPECT_EQ(what.rfind(argument + ": ", 0), 0u) << what;
    EXPECT_NE(what.find(", expected "), std::string::npos) << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
  }
}

}  // namespace attn::test
