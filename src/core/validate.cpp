// The one validation function of attn: every sdpa call passes through validate_forward or
// validate_backward before any backend runs. Each failure names the argument, the axis, the value
// seen and what was expected.

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "attn/error.hpp"
#include "core/problem.hpp"

namespace attn::core {
namespace {

constexpr const char* kAxisNames[] = {"B", "H", "N", "D"};

void check_rank(const TensorView& t, const char* name, int rank, const char* layout) {
  ATTN_CHECK(t.defined(), value, name, "is required but was not given, expected a ", layout, " tensor");
  ATTN_CHECK(t.rank == rank, shape, name, "has rank ", t.rank, " (shape ", t.shape_string(), "), expected rank ", rank, " ", layout);
  ATTN_CHECK(t.data != nullptr || t.numel() == 0, layout, name, "has a null data pointer but ", t.numel(), " elements, expected a data pointer");
}

void check_float(const TensorView& t, const char* name) {
  ATTN_CHECK(is_floating(t.dtype), dtype, name, "has dtype ", dtype_name(t.dtype), ", expected a floating dtype (f32, f64, bf16, f16)");
}

void check_dim(const TensorView& t, const char* name, int axis, std::int64_t expected, const char* why) {
  ATTN_CHECK(t.shape[axis] == expected, shape, name, name, ".shape[", axis, "] = ", t.shape[axis], ", expected ", expected,
             " = ", why, "; ", name, " has shape ", t.shape_string());
}

void check_same_shape(const TensorView& t, const char* name, const TensorView& like, const char* like_name) {
  bool same = t.rank == like.rank;
  for (int a = 0; same && a < t.rank; ++a) same = t.shape[a] == like.shape[a];
  ATTN_CHECK(same, shape, name, "has shape ", t.shape_string(), ", expected the shape of ", like_name, " ", like.shape_string());
}

bool overlaps(const TensorView& a, const TensorView& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0) return false;
  auto [a0, a1] = a.byte_span();
  auto [b0, b1] = b.byte_span();
  return a0 < b1 && b0 < a1;
}

void check_no_overlap(const TensorView& out, const char* out_name, const TensorView& in, const char* in_name) {
  ATTN_CHECK(!overlaps(out, in), layout, out_name, "overlaps ", in_name,
             " in memory, expected disjoint memory (outputs share no memory with inputs or other outputs)");
}

// An output must not write one element twice (e.g. a zero stride on an axis of size > 1).
void check_not_self_overlapping(const TensorView& t, const char* name) {
  if (t.numel() <= 1) return;
  std::array<int, kMaxRank> axes{};
  int n = 0;
  for (int a = 0; a < t.rank; ++a)
    if (t.shape[a] > 1) axes[n++] = a;
  for (int a = 1; a < n; ++a)  // insertion sort by |stride| (n <= 4)
    for (int c = a; c > 0 && std::abs(t.strides[axes[c]]) < std::abs(t.strides[axes[c - 1]]); --c) std::swap(axes[c], axes[c - 1]);
  std::int64_t reach = 1;  // elements spanned by the faster axes
  for (int idx = 0; idx < n; ++idx) {
    const int a = axes[idx];
    ATTN_CHECK(std::abs(t.strides[a]) >= reach, layout, name, "has strides that write some elements twice (axis ", a,
               " has stride ", t.strides[a], " with shape ", t.shape_string(), "), expected each element written once");
    reach = std::abs(t.strides[a]) * (t.shape[a] - 1) + reach;
  }
}

// PyTorch's right-aligned broadcast of `t` to [Bt, Hq, Nq, Nk].
Broadcast4 broadcast_to(const TensorView& t, const char* name, std::array<std::int64_t, 4> target) {
  Broadcast4 r;
  if (!t.defined()) return r;
  r.view = t;
  bool ok = t.rank >= 1 && t.rank <= 4;
  for (int a = 0; ok && a < t.rank; ++a) {
    const int ta = 4 - t.rank + a;
    if (t.shape[a] == target[ta]) r.strides[ta] = t.strides[a];
    else if (t.shape[a] == 1) r.strides[ta] = 0;
    else ok = false;
  }
  if (!ok) {
    std::ostringstream os;
    os << "has shape " << t.shape_string() << ", which does not broadcast to [B, Hq, Nq, Nk] = [" << target[0] << ", "
       << target[1] << ", " << target[2] << ", " << target[3] << "], expected a shape that does (PyTorch's right-aligned rules)";
    if (t.rank == 3)
      os << "; a rank-3 mask is read as [Hq, Nq, Nk]: for a per-batch mask use [B, 1, Nq, Nk] = [" << target[0] << ", 1, "
         << target[2] << ", " << target[3] << "]";
    throw Error(ErrorKind::shape, name, os.str());
  }
  return r;
}

void check_lengths(const std::vector<std::int64_t>& lengths, const char* name, std::int64_t B, std::int64_t N) {
  if (lengths.empty()) return;
  ATTN_CHECK(static_cast<std::int64_t>(lengths.size()) == B, shape, name, "has ", lengths.size(), " entries, expected B = ", B);
  for (std::size_t b = 0; b < lengths.size(); ++b)
    ATTN_CHECK(lengths[b] >= 0 && lengths[b] <= N, value, name, name, "[", b, "] = ", lengths[b], ", expected a length in [0, ", N, "]");
}

void check_cu_seqlens(const std::vector<std::int64_t>& cu, const char* name, std::int64_t total) {
  ATTN_CHECK(cu.size() >= 2, shape, name, "has ", cu.size(), " entries, expected at least 2 (number of sequences + 1)");
  ATTN_CHECK(cu.front() == 0, value, name, name, "[0] = ", cu.front(), ", expected 0");
  for (std::size_t s = 1; s < cu.size(); ++s)
    ATTN_CHECK(cu[s] >= cu[s - 1], value, name, "is not monotonic: ", name, "[", s, "] = ", cu[s], " < ", name, "[", s - 1, "] = ", cu[s - 1],
               ", expected non-decreasing prefix sums");
  ATTN_CHECK(cu.back() == total, value, name, "ends at ", cu.back(), ", expected the packed total length ", total);
}

// Causal, the window and ALiBi use the offset off_b; it depends on the alignment only when some
// sequence has Lq_b != Lk_b, and then the caller must choose (there is no default).
void check_alignment(const SdpaProblem& p, const MaskSpec& m) {
  if (m.alignment) return;
  const char* use = m.causal                                       ? "is causal"
                    : m.window_left >= 0 || m.window_right >= 0      ? "is windowed"
                    : !m.alibi_slopes.empty()                         ? "uses ALiBi"
                                                                      : nullptr;
  if (!use) return;
  for (std::size_t b = 0; b < p.Lq.size(); ++b) {
    if (p.Lq[b] == p.Lk[b]) continue;
    std::ostringstream seen;
    if (p.Nq != p.Nk) seen << "Nq = " << p.Nq << " != Nk = " << p.Nk;
    else seen << "sequence " << b << " has Lq = " << p.Lq[b] << " != Lk = " << p.Lk[b];
    ATTN_CHECK(false, value, "params.mask.alignment", "is not set, but the call ", use, " and ", seen.str(),
               ", expected top_left (query i aligned with key i, PyTorch's is_causal) or bottom_right (the last query "
               "aligned with the last key, FlashAttention and KV-cache decode)");
  }
}

void resolve_sequences(SdpaProblem& p, const MaskSpec& m, std::int64_t tensor_B) {
  const bool has_cu = !m.cu_seqlens_q.empty() || !m.cu_seqlens_k.empty();
  if (has_cu) {
    ATTN_CHECK(!m.cu_seqlens_q.empty() && !m.cu_seqlens_k.empty(), value, "params.mask.cu_seqlens_q",
               "is given without cu_seqlens_k or the other way round (only one of the two), expected both cu_seqlens_q and cu_seqlens_k");
    ATTN_CHECK(m.q_lengths.empty() && m.k_lengths.empty(), value, "params.mask.q_lengths",
               "is given together with cu_seqlens, expected one of the two (cu_seqlens already sets the lengths)");
    ATTN_CHECK(tensor_B == 1, shape, "q", "q.shape[0] = ", tensor_B, ", expected B = 1 (varlen packs the sequences along N of one batch row)");
    check_cu_seqlens(m.cu_seqlens_q, "params.mask.cu_seqlens_q", p.Nq);
    check_cu_seqlens(m.cu_seqlens_k, "params.mask.cu_seqlens_k", p.Nk);
    ATTN_CHECK(m.cu_seqlens_q.size() == m.cu_seqlens_k.size(), shape, "params.mask.cu_seqlens_k", "has ", m.cu_seqlens_k.size(),
               " entries, expected ", m.cu_seqlens_q.size(), " as cu_seqlens_q (both describe the same sequences)");
    p.varlen = true;
    p.B = static_cast<std::int64_t>(m.cu_seqlens_q.size()) - 1;
  } else {
    p.B = tensor_B;
    check_lengths(m.q_lengths, "params.mask.q_lengths", p.B, p.Nq);
    check_lengths(m.k_lengths, "params.mask.k_lengths", p.B, p.Nk);
  }
  const auto n = static_cast<std::size_t>(p.B);
  p.Lq.resize(n); p.Lk.resize(n); p.q_start.resize(n); p.k_start.resize(n); p.tensor_b.resize(n); p.off.resize(n);
  for (std::size_t b = 0; b < n; ++b) {
    if (p.varlen) {
      p.q_start[b] = m.cu_seqlens_q[b];
      p.k_start[b] = m.cu_seqlens_k[b];
      p.Lq[b] = m.cu_seqlens_q[b + 1] - m.cu_seqlens_q[b];
      p.Lk[b] = m.cu_seqlens_k[b + 1] - m.cu_seqlens_k[b];
      p.tensor_b[b] = 0;
    } else {
      p.Lq[b] = m.q_lengths.empty() ? p.Nq : m.q_lengths[b];
      p.Lk[b] = m.k_lengths.empty() ? p.Nk : m.k_lengths[b];
      p.tensor_b[b] = static_cast<std::int64_t>(b);
    }
    p.off[b] = m.alignment == Alignment::bottom_right ? p.Lk[b] - p.Lq[b] : 0;
  }
  check_alignment(p, m);
}

void check_block_mask(const BlockMask& bm, const SdpaProblem& p) {
  ATTN_CHECK(bm.q_block >= 1, value, "params.mask.block_mask.q_block", "= ", bm.q_block, ", expected >= 1");
  ATTN_CHECK(bm.k_block >= 1, value, "params.mask.block_mask.k_block", "= ", bm.k_block, ", expected >= 1");
  const TensorView& t = bm.keep;
  ATTN_CHECK(t.defined() && t.rank == 4, shape, "params.mask.block_mask.keep", "has rank ", t.rank,
             ", expected rank 4 [B or 1, Hq or 1, ceil(Nq/q_block), ceil(Nk/k_block)]");
  ATTN_CHECK(t.dtype == DType::boolean || t.dtype == DType::i8, dtype, "params.mask.block_mask.keep", "has dtype ",
             dtype_name(t.dtype), ", expected bool or i8");
  const std::int64_t maxLq = p.Lq.empty() ? 0 : *std::max_element(p.Lq.begin(), p.Lq.end());
  const std::int64_t maxLk = p.Lk.empty() ? 0 : *std::max_element(p.Lk.begin(), p.Lk.end());
  const std::int64_t nq = p.varlen ? (maxLq + bm.q_block - 1) / bm.q_block : (p.Nq + bm.q_block - 1) / bm.q_block;
  const std::int64_t nk = p.varlen ? (maxLk + bm.k_block - 1) / bm.k_block : (p.Nk + bm.k_block - 1) / bm.k_block;
  const std::array<std::int64_t, 4> want{p.B, p.Hq, nq, nk};
  for (int a = 0; a < 4; ++a) {
    const bool ok = t.shape[a] == want[a] || (a < 2 && t.shape[a] == 1);
    ATTN_CHECK(ok, shape, "params.mask.block_mask.keep", "keep.shape[", a, "] = ", t.shape[a], ", expected ", want[a],
               a < 2 ? " or 1" : "", " (shape ", t.shape_string(), ", blocks ", bm.q_block, "x", bm.k_block, ")");
  }
}

void check_params(SdpaProblem& p, const SdpaParams& params) {
  const MaskSpec& m = params.mask;
  if (params.scale) {
    ATTN_CHECK(std::isfinite(*params.scale), value, "params.scale", "= ", *params.scale, ", expected a finite value");
    p.scale = *params.scale;
  } else {
    p.scale = 1.0 / std::sqrt(static_cast<double>(p.D));
  }
  ATTN_CHECK(!std::isnan(params.dropout_p) && params.dropout_p >= 0.0 && params.dropout_p < 1.0, value, "params.dropout_p",
             "= ", params.dropout_p, ", expected a probability in [0, 1)");
  p.dropout_p = params.dropout_p;
  p.dropout_threshold = static_cast<std::uint32_t>(std::floor(params.dropout_p * 4294967296.0));
  ATTN_CHECK(m.window_left >= -1, value, "params.mask.window_left", "= ", m.window_left, ", expected -1 (unbounded) or >= 0");
  ATTN_CHECK(m.window_right >= -1, value, "params.mask.window_right", "= ", m.window_right, ", expected -1 (unbounded) or >= 0");
  p.window_left = m.window_left;
  p.window_right = m.causal ? (m.window_right == -1 ? 0 : std::min<std::int64_t>(m.window_right, 0)) : m.window_right;
  ATTN_CHECK(std::isfinite(m.softcap) && m.softcap >= 0.0, value, "params.mask.softcap", "= ", m.softcap, ", expected 0 (off) or a finite value > 0");
  if (!m.alibi_slopes.empty()) {
    ATTN_CHECK(static_cast<std::int64_t>(m.alibi_slopes.size()) == p.Hq, value, "params.mask.alibi_slopes", "has ",
               m.alibi_slopes.size(), " slopes, expected one per query head (Hq = ", p.Hq, ")");
    for (std::size_t h = 0; h < m.alibi_slopes.size(); ++h)
      ATTN_CHECK(std::isfinite(m.alibi_slopes[h]), value, "params.mask.alibi_slopes", "alibi_slopes[", h, "] = ", m.alibi_slopes[h], ", expected a finite slope");
  }
  ATTN_CHECK(!m.score_mod.grad || m.score_mod.value, value, "params.mask.score_mod", "has a grad but no value function, expected a value function too");
  const std::array<std::int64_t, 4> target{p.varlen ? 1 : p.B, p.Hq, p.Nq, p.Nk};
  if (m.bool_mask.defined()) {
    ATTN_CHECK(m.bool_mask.dtype == DType::boolean || m.bool_mask.dtype == DType::i8, dtype, "params.mask.bool_mask", "has dtype ",
               dtype_name(m.bool_mask.dtype), ", expected bool or i8 (true = attend); use params.mask.bias for float masks");
    p.bool_mask = broadcast_to(m.bool_mask, "params.mask.bool_mask", target);
  }
  if (m.bias.defined()) {
    check_float(m.bias, "params.mask.bias");
    p.bias = broadcast_to(m.bias, "params.mask.bias", target);
  }
  if (m.block_mask) check_block_mask(*m.block_mask, p);
}

SdpaProblem check_qkv(const TensorView& q, const TensorView& k, const TensorView& v, const SdpaParams& params) {
  check_rank(q, "q", 4, "[B, Hq, Nq, D]");
  check_rank(k, "k", 4, "[B, Hkv, Nk, D]");
  check_rank(v, "v", 4, "[B, Hkv, Nk, Dv]");
  check_float(q, "q");
  ATTN_CHECK(k.dtype == q.dtype, dtype, "k", "has dtype ", dtype_name(k.dtype), ", expected ", dtype_name(q.dtype), " as q (q, k, v must share a dtype)");
  ATTN_CHECK(v.dtype == q.dtype, dtype, "v", "has dtype ", dtype_name(v.dtype), ", expected ", dtype_name(q.dtype), " as q (q, k, v must share a dtype)");
  check_dim(k, "k", 0, q.shape[0], "q.shape[0] (batch B)");
  check_dim(k, "k", 3, q.shape[3], "q.shape[3] (head dims of q and k must match)");
  check_dim(v, "v", 0, k.shape[0], "k.shape[0] (batch B)");
  check_dim(v, "v", 1, k.shape[1], "k.shape[1] (kv heads Hkv)");
  check_dim(v, "v", 2, k.shape[2], "k.shape[2] (key length Nk)");
  ATTN_CHECK(q.shape[1] >= 1, shape, "q", "q.shape[1] = 0 query heads, expected Hq >= 1");
  ATTN_CHECK(k.shape[1] >= 1, shape, "k", "k.shape[1] = 0 kv heads, expected Hkv >= 1");
  ATTN_CHECK(q.shape[1] % k.shape[1] == 0, shape, "k", "k.shape[1] = ", k.shape[1], " kv heads, expected a divisor of q.shape[1] = ", q.shape[1],
             " query heads (Hq must be a multiple of Hkv)");
  ATTN_CHECK(q.shape[3] >= 1, shape, "q", "q.shape[3] = 0, expected head dim D >= 1");
  ATTN_CHECK(v.shape[3] >= 1, shape, "v", "v.shape[3] = 0, expected value head dim Dv >= 1");
  SdpaProblem p;
  p.Hq = q.shape[1]; p.Hkv = k.shape[1]; p.G = p.Hq / p.Hkv;
  p.Nq = q.shape[2]; p.Nk = k.shape[2]; p.D = q.shape[3]; p.Dv = v.shape[3];
  p.q = q; p.k = k; p.v = v;
  p.params = &params;
  resolve_sequences(p, params.mask, q.shape[0]);
  check_params(p, params);
  return p;
}

// lse and dlse: f64 for f64 inputs (fp64 gradients stay exact), f32 for f32/bf16/f16 inputs.
void check_lse_dtype(const TensorView& t, const char* name, DType input, std::optional<DType> lse_as) {
  const DType want = lse_as.value_or(lse_dtype(input));
  ATTN_CHECK(t.dtype == want, dtype, name, "has dtype ", dtype_name(t.dtype), ", expected ", dtype_name(want),
             lse_as                ? " (the dtype of this slot)"
             : want == DType::f64 ? " (f64 inputs carry an f64 lse, so that fp64 gradients stay fp64-exact)"
                                  : " (the lse of f32, bf16 and f16 inputs is f32)");
}

void check_out_lse(const SdpaProblem& p, const TensorView& out, const TensorView& lse, const char* out_name,
                   std::optional<DType> lse_as) {
  const std::int64_t tb = p.q.shape[0];
  check_rank(out, out_name, 4, "[B, Hq, Nq, Dv]");
  check_float(out, out_name);
  check_dim(out, out_name, 0, tb, "q.shape[0] (batch B)");
  check_dim(out, out_name, 1, p.Hq, "q.shape[1] (query heads Hq)");
  check_dim(out, out_name, 2, p.Nq, "q.shape[2] (query length Nq)");
  check_dim(out, out_name, 3, p.Dv, "v.shape[3] (value head dim Dv)");
  if (lse.defined()) {
    ATTN_CHECK(lse.rank == 3, shape, "lse", "has rank ", lse.rank, " (shape ", lse.shape_string(), "), expected rank 3 [B, Hq, Nq]");
    check_lse_dtype(lse, "lse", p.q.dtype, lse_as);
    check_dim(lse, "lse", 0, tb, "q.shape[0] (batch B)");
    check_dim(lse, "lse", 1, p.Hq, "q.shape[1] (query heads Hq)");
    check_dim(lse, "lse", 2, p.Nq, "q.shape[2] (query length Nq)");
  }
}

}  // namespace

SdpaProblem validate_forward(const SdpaOutputs& o, const TensorView& q, const TensorView& k, const TensorView& v,
                             const SdpaParams& params, std::optional<DType> lse_as) {
  SdpaProblem p = check_qkv(q, k, v, params);
  check_out_lse(p, o.out, o.lse, "out", lse_as);
  if (o.probs.defined()) {
    ATTN_CHECK(o.probs.rank == 4, shape, "probs", "has rank ", o.probs.rank, ", expected rank 4 [B, Hq, Nq, Nk]");
    check_float(o.probs, "probs");
    const std::array<std::int64_t, 4> want{q.shape[0], p.Hq, p.Nq, p.Nk};
    for (int a = 0; a < 4; ++a)
      ATTN_CHECK(o.probs.shape[a] == want[a], shape, "probs", "probs.shape[", a, "] (", kAxisNames[a], ") = ", o.probs.shape[a],
                 ", expected ", want[a], " ([B, Hq, Nq, Nk])");
  }
  const std::pair<const TensorView*, const char*> outs[] = {{&o.out, "out"}, {&o.lse, "lse"}, {&o.probs, "probs"}};
  const std::pair<const TensorView*, const char*> ins[] = {
      {&q, "q"}, {&k, "k"}, {&v, "v"}, {&params.mask.bias, "params.mask.bias"}, {&params.mask.bool_mask, "params.mask.bool_mask"}};
  for (auto [t, name] : outs) {
    if (!t->defined()) continue;
    check_not_self_overlapping(*t, name);
    for (auto [in, in_name] : ins) check_no_overlap(*t, name, *in, in_name);
  }
  check_no_overlap(o.out, "out", o.lse, "lse");
  check_no_overlap(o.out, "out", o.probs, "probs");
  check_no_overlap(o.lse, "lse", o.probs, "probs");
  return p;
}

SdpaProblem validate_backward(const SdpaGrads& g, const TensorView& dout, const TensorView& q, const TensorView& k,
                              const TensorView& v, const TensorView& out, const TensorView& lse,
                              const SdpaParams& params, const TensorView& dlse, std::optional<DType> lse_as) {
  SdpaProblem p = check_qkv(q, k, v, params);
  check_out_lse(p, out, lse, "out", lse_as);
  ATTN_CHECK(lse.defined(), value, "lse", "is not given, expected the forward's lse (it is required by sdpa_backward)");
  if (dlse.defined()) {
    check_rank(dlse, "dlse", 3, "[B, Hq, Nq]");
    check_lse_dtype(dlse, "dlse", q.dtype, lse_as);
    check_same_shape(dlse, "dlse", lse, "lse");
  }
  check_rank(dout, "dout", 4, "[B, Hq, Nq, Dv]");
  check_float(dout, "dout");
  check_same_shape(dout, "dout", out, "out");
  const std::pair<const TensorView*, const char*> grads[] = {{&g.dq, "dq"}, {&g.dk, "dk"}, {&g.dv, "dv"}};
  const TensorView* likes[] = {&q, &k, &v};
  const char* like_names[] = {"q", "k", "v"};
  for (int t = 0; t < 3; ++t) {
    check_rank(*grads[t].first, grads[t].second, 4, "tensor shaped like its input");
    check_float(*grads[t].first, grads[t].second);
    check_same_shape(*grads[t].first, grads[t].second, *likes[t], like_names[t]);
  }
  if (g.dbias.defined()) {
    ATTN_CHECK(params.mask.bias.defined(), value, "dbias", "was asked for, but params.mask.bias is not given, expected a bias to differentiate");
    check_float(g.dbias, "dbias");
    check_same_shape(g.dbias, "dbias", params.mask.bias, "params.mask.bias");
  }
  const std::pair<const TensorView*, const char*> outs[] = {{&g.dq, "dq"}, {&g.dk, "dk"}, {&g.dv, "dv"}, {&g.dbias, "dbias"}};
  const std::pair<const TensorView*, const char*> ins[] = {{&q, "q"},
                                                           {&k, "k"},
                                                           {&v, "v"},
                                                           {&out, "out"},
                                                           {&lse, "lse"},
                                                           {&dout, "dout"},
                                                           {&dlse, "dlse"},
                                                           {&params.mask.bias, "params.mask.bias"},
                                                           {&params.mask.bool_mask, "params.mask.bool_mask"}};
  for (std::size_t a = 0; a < std::size(outs); ++a) {
    if (!outs[a].first->defined()) continue;
    check_not_self_overlapping(*outs[a].first, outs[a].second);
    for (auto [in, in_name] : ins) check_no_overlap(*outs[a].first, outs[a].second, *in, in_name);
    for (std::size_t b = a + 1; b < std::size(outs); ++b) check_no_overlap(*outs[a].first, outs[a].second, *outs[b].first, outs[b].second);
  }
  return p;
}

}  // namespace attn::core
