#pragma once
// Helpers shared by the test binaries: seeded random fills, q/k/v/out tensors in BHSD or BSHD
// layout inside NaN-filled guard memory, NaN beyond lengths, error measures, deep copies, and a
// naive dense attention loop that tests use as an independent oracle for small cases.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "attn/sdpa.hpp"
#include "attn/tensor.hpp"

namespace attn::test {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
inline constexpr double kInf = std::numeric_limits<double>::infinity();
/// Guard band (elements) on each side of every test tensor; odd so that misaligned reads show too.
inline constexpr std::int64_t kGuard = 37;

/// Memory order of a logical [B, H, N, D] tensor: BHSD (row-major) or BSHD ("batch_first").
enum class Layout { bhsd, bshd };
inline const char* layout_name(Layout l) { return l == Layout::bhsd ? "bhsd" : "bshd"; }

/// Calls fn(index, element offset) for every element of a view (rank <= 4), in row-major index order.
template <class Fn>
void for_each_element(const TensorView& t, Fn&& fn) {
  std::array<std::int64_t, 4> shape{1, 1, 1, 1}, idx{};
  for (int a = 0; a < t.rank; ++a) shape[a] = t.shape[a];
  if (t.numel() == 0) return;
  for (idx[0] = 0; idx[0] < shape[0]; ++idx[0])
    for (idx[1] = 0; idx[1] < shape[1]; ++idx[1])
      for (idx[2] = 0; idx[2] < shape[2]; ++idx[2])
        for (idx[3] = 0; idx[3] < shape[3]; ++idx[3]) {
          std::int64_t off = 0;
          for (int a = 0; a < t.rank; ++a) off += idx[a] * t.strides[a];
          fn(idx, off);
        }
}

/// Element at a logical index (missing trailing axes are 0).
inline double at(const TensorView& t, std::int64_t i0, std::int64_t i1 = 0, std::int64_t i2 = 0, std::int64_t i3 = 0) {
  return load_f64(t, t.offset({i0, i1, i2, i3}));
}
inline void set(const TensorView& t, double value, std::int64_t i0, std::int64_t i1 = 0, std::int64_t i2 = 0,
                std::int64_t i3 = 0) {
  store_f64(t, t.offset({i0, i1, i2, i3}), value);
}

/// Normal(mean, stddev) values from a seeded std::mt19937_64.
inline void fill_normal(const TensorView& t, std::uint64_t seed, double mean = 0.0, double stddev = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  for_each_element(t, [&](const auto&, std::int64_t off) { store_f64(t, off, dist(rng)); });
}

/// Uniform[lo, hi) values from a seeded std::mt19937_64.
inline void fill_uniform(const TensorView& t, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  for_each_element(t, [&](const auto&, std::int64_t off) { store_f64(t, off, dist(rng)); });
}

inline void fill_value(const TensorView& t, double value) {
  for_each_element(t, [&](const auto&, std::int64_t off) { store_f64(t, off, value); });
}

/// An owning tensor (guard bands filled with NaN) and the logical view the tests pass around.
struct GuardedTensor {
  Tensor mem;
  TensorView view;
  operator const TensorView&() const { return view; }  // NOLINT: usable as its view
  /// True when every guard element is still NaN (nothing wrote outside the view's storage).
  bool guards_intact() const {
    const TensorView all(mem.storage(), mem.dtype(), {mem.storage_elems()});
    for (std::int64_t e = 0; e < kGuard; ++e)
      if (!std::isnan(load_f64(all, e)) || !std::isnan(load_f64(all, mem.storage_elems() - 1 - e))) return false;
    return true;
  }
};

/// A logical [d0, d1, d2, d3] tensor stored as BHSD or BSHD (axes 1 and 2 swapped in memory), NaN-filled.
inline GuardedTensor make_tensor4(DType dtype, std::int64_t d0, std::int64_t d1, std::int64_t d2, std::int64_t d3,
                                  Layout layout = Layout::bhsd) {
  GuardedTensor t;
  if (layout == Layout::bhsd) {
    t.mem = Tensor::with_guard(dtype, {d0, d1, d2, d3}, kGuard);
    t.view = t.mem.view();
  } else {
    t.mem = Tensor::with_guard(dtype, {d0, d2, d1, d3}, kGuard);
    t.view = t.mem.view().permute({0, 2, 1, 3});
  }
  return t;
}

/// A row-major tensor of any shape (rank 1..4) in NaN-filled guard memory.
inline GuardedTensor make_tensor(DType dtype, std::initializer_list<std::int64_t> shape) {
  GuardedTensor t;
  t.mem = Tensor::with_guard(dtype, shape, kGuard);
  t.view = t.mem.view();
  return t;
}

/// A row-major tensor of a shape known at run time (rank 1..4) in NaN-filled guard memory.
inline GuardedTensor make_row_major(DType dtype, const std::int64_t* shape, int rank) {
  std::int64_t numel = 1;
  for (int a = 0; a < rank; ++a) numel *= shape[a];
  GuardedTensor t;
  t.mem = Tensor::with_guard(dtype, {numel}, kGuard);
  t.view = t.mem.view();
  t.view.rank = rank;
  std::int64_t stride = 1;
  for (int a = rank - 1; a >= 0; --a) {
    t.view.shape[a] = shape[a];
    t.view.strides[a] = stride;
    stride *= shape[a];
  }
  return t;
}

/// A deep copy of `src` into fresh guard memory (same logical shape; BHSD/BSHD order for rank 4).
inline GuardedTensor clone(const TensorView& src, Layout layout = Layout::bhsd, DType dtype = DType::f64) {
  GuardedTensor t = src.rank == 4
                        ? make_tensor4(dtype, src.shape[0], src.shape[1], src.shape[2], src.shape[3], layout)
                        : make_row_major(dtype, src.shape.data(), src.rank);
  for_each_element(src, [&](const auto& idx, std::int64_t off) {
    store_f64(t.view, t.view.offset({idx[0], idx[1], idx[2], idx[3]}), load_f64(src, off));
  });
  return t;
}

/// q [B, Hq, Nq, D], k [B, Hkv, Nk, D], v [B, Hkv, Nk, Dv] filled with seeded normal values.
struct Qkv {
  GuardedTensor q, k, v;
  std::int64_t B = 0, Hq = 0, Hkv = 0, Nq = 0, Nk = 0, D = 0, Dv = 0;
  DType dtype = DType::f64;
  Layout layout = Layout::bhsd;
};

inline Qkv make_qkv(std::int64_t B, std::int64_t Hq, std::int64_t Hkv, std::int64_t Nq, std::int64_t Nk, std::int64_t D,
                    std::int64_t Dv, DType dtype = DType::f64, Layout layout = Layout::bhsd, std::uint64_t seed = 1) {
  Qkv r;
  r.B = B;
  r.Hq = Hq;
  r.Hkv = Hkv;
  r.Nq = Nq;
  r.Nk = Nk;
  r.D = D;
  r.Dv = Dv;
  r.dtype = dtype;
  r.layout = layout;
  r.q = make_tensor4(dtype, B, Hq, Nq, D, layout);
  r.k = make_tensor4(dtype, B, Hkv, Nk, D, layout);
  r.v = make_tensor4(dtype, B, Hkv, Nk, Dv, layout);
  fill_normal(r.q.view, seed * 3 + 0);
  fill_normal(r.k.view, seed * 3 + 1);
  fill_normal(r.v.view, seed * 3 + 2);
  return r;
}

/// A deep copy of q, k, v (same values) in the given layout.
inline Qkv copy_qkv(const Qkv& x, Layout layout) {
  Qkv r = {clone(x.q, layout, x.dtype),
           clone(x.k, layout, x.dtype),
           clone(x.v, layout, x.dtype),
           x.B,
           x.Hq,
           x.Hkv,
           x.Nq,
           x.Nk,
           x.D,
           x.Dv,
           x.dtype,
           layout};
  return r;
}

/// Rows [start, start + len) of axis 2 (the N axis of [B, H, N, ...] views, lse included).
inline TensorView slice_rows(const TensorView& t, std::int64_t start, std::int64_t len) {
  TensorView r = t;
  r.data = t.at(start * t.strides[2]);
  r.shape[2] = len;
  return r;
}

/// Sets rows n >= lengths[b] of a [B, H, N, ...] view to NaN (memory the kernels must not read).
inline void nan_beyond_lengths(const TensorView& t, const std::vector<std::int64_t>& lengths) {
  for_each_element(t, [&](const auto& idx, std::int64_t off) {
    if (idx[2] >= lengths[static_cast<std::size_t>(idx[0])]) store_f64(t, off, kNaN);
  });
}

/// Forward outputs in guard memory: out [B, Hq, Nq, Dv] (layout of q), lse [B, Hq, Nq] (f64 for f64
/// inputs, else f32), probs.
struct Outputs {
  GuardedTensor out, lse, probs;
  SdpaOutputs views() const { return {out.view, lse.view, probs.view}; }
};

inline Outputs make_outputs(const Qkv& x, bool with_probs = false, DType out_dtype = DType::f64) {
  Outputs o;
  o.out = make_tensor4(out_dtype, x.B, x.Hq, x.Nq, x.Dv, x.layout);
  o.lse = make_tensor(lse_dtype(x.dtype), {x.B, x.Hq, x.Nq});
  if (with_probs) o.probs = make_tensor4(DType::f64, x.B, x.Hq, x.Nq, x.Nk);
  return o;
}

/// Runs sdpa_forward on q/k/v and returns fresh outputs.
inline Outputs forward(const Qkv& x, const SdpaParams& params, bool with_probs = false, DType out_dtype = DType::f64) {
  Outputs o = make_outputs(x, with_probs, out_dtype);
  sdpa_forward(o.views(), x.q, x.k, x.v, params);
  return o;
}

/// Gradients in guard memory shaped like q, k, v (and the bias when given).
struct Grads {
  GuardedTensor dq, dk, dv, dbias;
  SdpaGrads views() const { return {dq.view, dk.view, dv.view, dbias.view}; }
};

inline Grads make_grads(const Qkv& x, const TensorView& bias = {}) {
  Grads g;
  g.dq = make_tensor4(DType::f64, x.B, x.Hq, x.Nq, x.D, x.layout);
  g.dk = make_tensor4(DType::f64, x.B, x.Hkv, x.Nk, x.D, x.layout);
  g.dv = make_tensor4(DType::f64, x.B, x.Hkv, x.Nk, x.Dv, x.layout);
  if (bias.defined()) {
    g.dbias = clone(bias);
    fill_value(g.dbias.view, kNaN);
  }
  return g;
}

/// Largest |a - b| over two views of the same shape; NaN in exactly one of them counts as +inf,
/// NaN in both as equal.
inline double max_abs_diff(const TensorView& a, const TensorView& b) {
  double m = 0.0;
  for_each_element(a, [&](const auto& idx, std::int64_t off) {
    const double x = load_f64(a, off), y = load_f64(b, b.offset({idx[0], idx[1], idx[2], idx[3]}));
    if (std::isnan(x) && std::isnan(y)) return;
    const double d = (std::isnan(x) || std::isnan(y)) ? kInf : (x == y ? 0.0 : std::abs(x - y));
    m = std::max(m, d);
  });
  return m;
}

/// Normalised mean squared error Σ(a - ref)² / Σ ref² (0 when both are all zero).
inline double nmse(const TensorView& a, const TensorView& ref) {
  double num = 0.0, den = 0.0;
  for_each_element(a, [&](const auto& idx, std::int64_t off) {
    const double x = load_f64(a, off), y = load_f64(ref, ref.offset({idx[0], idx[1], idx[2], idx[3]}));
    num += (x - y) * (x - y);
    den += y * y;
  });
  return den == 0.0 ? num : num / den;
}

inline bool has_nan(const TensorView& t) {
  bool any = false;
  for_each_element(t, [&](const auto&, std::int64_t off) { any |= std::isnan(load_f64(t, off)); });
  return any;
}

inline double max_abs(const TensorView& t) {
  double m = 0.0;
  for_each_element(t, [&](const auto&, std::int64_t off) { m = std::max(m, std::abs(load_f64(t, off))); });
  return m;
}

/// Naive dense attention, an oracle independent of the library: for each (b, h, i),
/// s_j = score(b, h, i, j, q_i·k_j) (return -inf to hide), out_i = softmax(s)·V, lse_i.
/// Fully hidden rows give out = 0, lse = -inf. Plain (B = tensor batch) layout only.
using NaiveScore = std::function<double(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j, double dot)>;

struct NaiveResult {
  std::vector<double> out, lse;  // out [B, Hq, Nq, Dv], lse [B, Hq, Nq], row-major
  double out_at(const Qkv& x, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t d) const {
    return out[static_cast<std::size_t>(((b * x.Hq + h) * x.Nq + i) * x.Dv + d)];
  }
  double lse_at(const Qkv& x, std::int64_t b, std::int64_t h, std::int64_t i) const {
    return lse[static_cast<std::size_t>((b * x.Hq + h) * x.Nq + i)];
  }
};

inline NaiveResult naive_attention(const Qkv& x, const NaiveScore& score) {
  NaiveResult r;
  r.out.assign(static_cast<std::size_t>(x.B * x.Hq * x.Nq * x.Dv), 0.0);
  r.lse.assign(static_cast<std::size_t>(x.B * x.Hq * x.Nq), -kInf);
  std::vector<double> s(static_cast<std::size_t>(x.Nk));
  for (std::int64_t b = 0; b < x.B; ++b)
    for (std::int64_t h = 0; h < x.Hq; ++h)
      for (std::int64_t i = 0; i < x.Nq; ++i) {
        double m = -kInf;
        for (std::int64_t j = 0; j < x.Nk; ++j) {
          double dot = 0.0;
          for (std::int64_t d = 0; d < x.D; ++d) dot += at(x.q, b, h, i, d) * at(x.k, b, h / (x.Hq / x.Hkv), j, d);
          s[j] = score(b, h, i, j, dot);
          m = std::max(m, s[j]);
        }
        if (m == -kInf) continue;
        double l = 0.0;
        for (std::int64_t j = 0; j < x.Nk; ++j) l += s[j] == -kInf ? 0.0 : std::exp(s[j] - m);
        r.lse[static_cast<std::size_t>((b * x.Hq + h) * x.Nq + i)] = m + std::log(l);
        for (std::int64_t j = 0; j < x.Nk; ++j) {
          if (s[j] == -kInf) continue;
          const double p = std::exp(s[j] - m) / l;
          for (std::int64_t d = 0; d < x.Dv; ++d)
            r.out[static_cast<std::size_t>(((b * x.Hq + h) * x.Nq + i) * x.Dv + d)] +=
                p * at(x.v, b, h / (x.Hq / x.Hkv), j, d);
        }
      }
  return r;
}

/// Largest |out - naive| over out [B, Hq, Nq, Dv].
inline double max_abs_diff(const TensorView& out, const NaiveResult& ref, const Qkv& x) {
  double m = 0.0;
  for (std::int64_t b = 0; b < x.B; ++b)
    for (std::int64_t h = 0; h < x.Hq; ++h)
      for (std::int64_t i = 0; i < x.Nq; ++i)
        for (std::int64_t d = 0; d < x.Dv; ++d) {
          const double e = std::abs(at(out, b, h, i, d) - ref.out_at(x, b, h, i, d));
          m = std::isnan(e) ? kInf : std::max(m, e);
        }
  return m;
}

}  // namespace attn::test
