#pragma once
// Helpers for the nn module tests: sequences as logical [B, L, C] fp64 arrays, their module
// layouts ((B, L, C), (L, B, C), unbatched (L, C)) in NaN-guarded memory, and an independent
// composition of MultiheadAttention written here — naive GEMM loops, RoPE from its formula and
// the reference SDPA backend — that the module is checked against.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/multihead_attention.hpp"
#include "attn/sdpa.hpp"
#include "common/test_util.hpp"

namespace attn::test {

/// A logical [B, L, C] sequence batch in fp64.
struct Seq {
  std::int64_t B = 0, L = 0, C = 0;
  std::vector<double> v;
  Seq() = default;
  Seq(std::int64_t B_, std::int64_t L_, std::int64_t C_)
      : B(B_), L(L_), C(C_), v(static_cast<std::size_t>(B_ * L_ * C_)) {}
  double& at(std::int64_t b, std::int64_t l, std::int64_t c) {
    return v[static_cast<std::size_t>((b * L + l) * C + c)];
  }
  double at(std::int64_t b, std::int64_t l, std::int64_t c) const {
    return v[static_cast<std::size_t>((b * L + l) * C + c)];
  }
};

inline Seq random_seq(std::int64_t B, std::int64_t L, std::int64_t C, std::uint64_t seed) {
  Seq s(B, L, C);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  for (double& x : s.v) x = d(rng);
  return s;
}

/// Module layout of a sequence batch.
enum class SeqLayout { batch_first, seq_first, unbatched };
inline const char* seq_layout_name(SeqLayout l) {
  return l == SeqLayout::batch_first ? "BLE" : l == SeqLayout::seq_first ? "LBE" : "LE";
}

/// Element offset of (b, l, c) in a module-layout view.
inline std::int64_t seq_offset(const TensorView& t, SeqLayout layout, std::int64_t b, std::int64_t l, std::int64_t c) {
  switch (layout) {
    case SeqLayout::batch_first: return t.offset({b, l, c});
    case SeqLayout::seq_first: return t.offset({l, b, c});
    default: return t.offset({l, c});
  }
}

/// The sequence in module layout, in NaN-guarded memory, dtype `dtype`.
inline GuardedTensor to_module(const Seq& s, SeqLayout layout, DType dtype) {
  GuardedTensor t = layout == SeqLayout::batch_first ? make_tensor(dtype, {s.B, s.L, s.C})
                    : layout == SeqLayout::seq_first ? make_tensor(dtype, {s.L, s.B, s.C})
                                                     : make_tensor(dtype, {s.L, s.C});
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t l = 0; l < s.L; ++l)
      for (std::int64_t c = 0; c < s.C; ++c) store_f64(t.view, seq_offset(t.view, layout, b, l, c), s.at(b, l, c));
  return t;
}

/// A module-layout tensor read back as a logical sequence.
inline Seq from_module(const TensorView& t, SeqLayout layout) {
  const std::int64_t C = t.shape[t.rank - 1];
  const std::int64_t B = layout == SeqLayout::batch_first ? t.shape[0]
                         : layout == SeqLayout::seq_first ? t.shape[1]
                                                          : 1;
  const std::int64_t L = layout == SeqLayout::seq_first     ? t.shape[0]
                         : layout == SeqLayout::batch_first ? t.shape[1]
                                                            : t.shape[0];
  Seq s(B, L, C);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t l = 0; l < L; ++l)
      for (std::int64_t c = 0; c < C; ++c) s.at(b, l, c) = load_f64(t, seq_offset(t, layout, b, l, c));
  return s;
}

inline double max_abs_diff(const Seq& a, const Seq& b) {
  EXPECT_EQ(a.v.size(), b.v.size());
  double m = 0;
  for (std::size_t i = 0; i < a.v.size() && i < b.v.size(); ++i) {
    const double d = std::abs(a.v[i] - b.v[i]);
    if (std::isnan(d)) return kInf;
    m = std::max(m, d);
  }
  return m;
}

/// y = x·Wᵀ + b by plain loops (W [out, in] view of any float dtype; b may be empty).
inline Seq naive_linear(const Seq& x, const TensorView& W, const TensorView& b) {
  const std::int64_t out = W.shape[0], in = W.shape[1];
  Seq y(x.B, x.L, out);
  for (std::int64_t n = 0; n < x.B; ++n)
    for (std::int64_t l = 0; l < x.L; ++l)
      for (std::int64_t o = 0; o < out; ++o) {
        double acc = b.defined() ? load_f64(b, o) : 0.0;
        for (std::int64_t i = 0; i < in; ++i) acc += load_f64(W, W.offset({o, i})) * x.at(n, l, i);
        y.at(n, l, o) = acc;
      }
  return y;
}

/// RoPE by its formula (fp32 inverse frequencies and angles as Hugging Face computes them) on
/// t [B, H, L, hd], token l of row b at position offsets[b] + l.
inline void naive_rope(const TensorView& t, const nn::RotaryConfig& rc, const std::vector<std::int64_t>& offsets) {
  const std::int64_t hd = t.shape[3], rd = rc.rotary_dim ? rc.rotary_dim : hd, half = rd / 2;
  for (std::int64_t b = 0; b < t.shape[0]; ++b)
    for (std::int64_t h = 0; h < t.shape[1]; ++h)
      for (std::int64_t l = 0; l < t.shape[2]; ++l) {
        const std::int64_t pos = (offsets.empty() ? 0 : offsets.size() == 1 ? offsets[0] : offsets[b]) + l;
        for (std::int64_t i = 0; i < half; ++i) {
          const float inv =
              1.0f / std::pow(static_cast<float>(rc.base), static_cast<float>(2 * i) / static_cast<float>(rd));
          const float ang = static_cast<float>(pos) * inv;
          const double c = std::cos(ang), s = std::sin(ang);
          const std::int64_t d1 = rc.convention == nn::RotaryConvention::half_split ? i : 2 * i;
          const std::int64_t d2 = rc.convention == nn::RotaryConvention::half_split ? i + half : 2 * i + 1;
          const double x1 = at(t, b, h, l, d1), x2 = at(t, b, h, l, d2);
          set(t, x1 * c - x2 * s, b, h, l, d1);
          set(t, x2 * c + x1 * s, b, h, l, d2);
        }
      }
}

/// [B, L, H·hd] -> an f64 [B, H, L, hd] tensor and back.
inline GuardedTensor split_heads(const Seq& y, std::int64_t H) {
  const std::int64_t hd = y.C / H;
  GuardedTensor t = make_tensor4(DType::f64, y.B, H, y.L, hd);
  for (std::int64_t b = 0; b < y.B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t l = 0; l < y.L; ++l)
        for (std::int64_t d = 0; d < hd; ++d) set(t.view, y.at(b, l, h * hd + d), b, h, l, d);
  return t;
}
inline Seq merge_heads(const TensorView& t) {
  const std::int64_t B = t.shape[0], H = t.shape[1], L = t.shape[2], hd = t.shape[3];
  Seq y(B, L, H * hd);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t d = 0; d < hd; ++d) y.at(b, l, h * hd + d) = at(t, b, h, l, d);
  return y;
}

/// The reference composition's result: out [B, Lq, E] and the per-head probabilities.
struct RefMha {
  Seq out;
  GuardedTensor probs;  // [B, Hq, Lq, Lk] (post-dropout)
};

/// MultiheadAttention composed here from naive GEMMs, RoPE and the reference SDPA, reading the
/// module's parameters by name. `params` carries the mask/dropout of the call (backend forced).
template <class M>
RefMha reference_mha(const M& m, const Seq& q, const Seq& k, const Seq& v, SdpaParams params,
                     const std::vector<std::int64_t>& positions = {}) {
  const bool bias = m.config().bias;
  auto w = [&](const char* n) { return m.parameter(n).value; };
  auto bv = [&](const char* n) { return bias ? m.parameter(n).value : TensorView(); };
  const Seq qp = naive_linear(q, w("q_proj.weight"), bv("q_proj.bias"));
  const Seq kp = naive_linear(k, w("k_proj.weight"), bv("k_proj.bias"));
  const Seq vp = naive_linear(v, w("v_proj.weight"), bv("v_proj.bias"));
  GuardedTensor Q = split_heads(qp, m.num_heads()), K = split_heads(kp, m.num_kv_heads()),
                V = split_heads(vp, m.num_kv_heads());
  if (m.config().rotary) {
    naive_rope(Q.view, *m.config().rotary, positions);
    naive_rope(K.view, *m.config().rotary, positions);
  }
  GuardedTensor O = make_tensor4(DType::f64, q.B, m.num_heads(), q.L, m.head_dim());
  RefMha r;
  r.probs = make_tensor4(DType::f64, q.B, m.num_heads(), q.L, k.L);
  params.backend = Backend::reference;
  params.probs_kind = ProbsKind::post_dropout;
  sdpa_forward({O.view, {}, r.probs.view}, Q.view, K.view, V.view, params);
  r.out = naive_linear(merge_heads(O.view), w("out_proj.weight"), bv("out_proj.bias"));
  return r;
}

/// Random biases (the module starts them at zero) so that the tests exercise them.
inline void randomize_biases(const nn::Module& m, std::uint64_t seed) {
  for (const nn::Parameter& p : m.parameters())
    if (p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0)
      fill_uniform(p.value, seed++, -0.5, 0.5);
}

}  // namespace attn::test
