// Validation of linear-attention calls. The shapes, dtypes, lengths and overlaps of q, k, v, out
// and the gradients are SDPA's, so they go through core's one validation function
// (src/core/validate.cpp); this file adds what is linear attention's own: the refusal of masks the
// linear form cannot express, the feature map and projection, eps, key padding, den and the state.

#include <cmath>

#include "attn/error.hpp"
#include "core/problem.hpp"
#include "linear/problem.hpp"

namespace attn::linear {
namespace {

constexpr const char* kUseSdpa =
    "; linear attention sums over all visible keys at once (S = Σ φ(k_j) v_jᵀ), so it can only drop whole keys "
    "(causal prefix, key padding, k_lengths); use softmax attention (attn::sdpa_forward) for this mask)";

// Every MaskSpec field that is not a causal prefix or a key length is refused, with why.
void refuse_masks(const MaskSpec& m) {
  ATTN_CHECK(!m.bool_mask.defined(), unsupported, "params.mask.bool_mask",
             "is given (an arbitrary [Nq, Nk] boolean mask), expected none (not expressible by linear attention",
             kUseSdpa);
  ATTN_CHECK(!m.bias.defined(), unsupported, "params.mask.bias",
             "is given (an additive [Nq, Nk] bias), expected none (not expressible by linear attention", kUseSdpa);
  ATTN_CHECK(m.window_left == -1, unsupported, "params.mask.window_left", "= ", m.window_left,
             ", expected -1 (a sliding window is not expressible by linear attention: a key would have to leave the "
             "running sum",
             kUseSdpa);
  ATTN_CHECK(m.window_right == -1, unsupported, "params.mask.window_right", "= ", m.window_right,
             ", expected -1 (a window is not expressible by linear attention, only causal = true, i.e. keys j <= i",
             kUseSdpa);
  ATTN_CHECK(m.alibi_slopes.empty(), unsupported, "params.mask.alibi_slopes", "has ", m.alibi_slopes.size(),
             " entries, expected none (ALiBi is not expressible by linear attention: it adds a per-(i, j) term to a "
             "score the linear form never forms",
             kUseSdpa);
  ATTN_CHECK(m.softcap == 0.0, unsupported, "params.mask.softcap", "= ", m.softcap,
             ", expected 0 (softcap is not expressible by linear attention: it caps scores the linear form never forms", kUseSdpa);
  ATTN_CHECK(!m.block_mask, unsupported, "params.mask.block_mask",
             "is given, expected none (a block-sparse mask is not expressible by linear attention", kUseSdpa);
  ATTN_CHECK(!m.mask_mod, unsupported, "params.mask.mask_mod",
             "is given, expected none (a per-(i, j) mask callback is not expressible by linear attention", kUseSdpa);
  ATTN_CHECK(!m.score_mod, unsupported, "params.mask.score_mod",
             "is given, expected none (a score callback is not expressible by linear attention", kUseSdpa);
  ATTN_CHECK(m.cu_seqlens_q.empty() && m.cu_seqlens_k.empty(), unsupported, "params.mask.cu_seqlens_q",
             "is given, expected none (packed variable-length batches are not supported by linear attention; pad to "
             "[B, N] and pass k_lengths or key_padding_mask)");
  ATTN_CHECK(m.q_lengths.empty(), unsupported, "params.mask.q_lengths",
             "is given, expected none (not supported by linear attention: every query row is computed independently; "
             "ignore the rows past a query length, and use k_lengths or key_padding_mask for keys)");
}

void check_params(LinearProblem& p, const LinearAttentionParams& params) {
  ATTN_CHECK(std::isfinite(params.eps) && params.eps > 0.0, value, "params.eps", "= ", params.eps,
             ", expected a finite value > 0");
  ATTN_CHECK(params.chunk >= 0, value, "params.chunk", "= ", params.chunk, ", expected 0 (default) or >= 1");
  ATTN_CHECK(params.backend != Backend::cuda, unsupported, "params.backend",
             "= cuda, expected automatic, cpu or reference (cuda has no linear attention)");
  p.eps = params.eps;
  p.map = params.feature_map;
  p.num_threads = params.num_threads;
  p.chunk = params.chunk;
  const TensorView& w = params.projection;
  if (p.map == FeatureMap::favor) {
    ATTN_CHECK(w.defined(), value, "params.projection",
               "is not given, expected an [m, D] matrix for feature_map = favor (attn::favor_projection draws one)");
    ATTN_CHECK(w.rank == 2, shape, "params.projection", "has rank ", w.rank, " (shape ", w.shape_string(),
               "), expected rank 2 [m, D]");
    ATTN_CHECK(is_floating(w.dtype), dtype, "params.projection", "has dtype ", dtype_name(w.dtype),
               ", expected a floating dtype (f32, f64, bf16, f16)");
    ATTN_CHECK(w.shape[0] >= 1, shape, "params.projection", "has m = ", w.shape[0], " rows, expected m >= 1 features");
    ATTN_CHECK(w.shape[1] == p.D, shape, "params.projection", "projection.shape[1] = ", w.shape[1], ", expected ", p.D,
               " = q.shape[3] (the head dim D; projection has shape ", w.shape_string(), ")");
    ATTN_CHECK(w.data != nullptr, layout, "params.projection", "has a null data pointer, expected a data pointer");
    p.F = w.shape[0];
    p.projection = w;
  } else {
    ATTN_CHECK(!w.defined(), value, "params.projection",
               "is given, expected none for feature_map = elu (it takes no projection; use favor)");
    p.F = p.D;
  }
  const TensorView& kp = params.key_padding_mask;
  if (kp.defined()) {
    ATTN_CHECK(kp.rank == 2, shape, "params.key_padding_mask", "has rank ", kp.rank, " (shape ", kp.shape_string(),
               "), expected rank 2 [B, Nk]");
    ATTN_CHECK(kp.dtype == DType::boolean || kp.dtype == DType::i8, dtype, "params.key_padding_mask", "has dtype ",
               dtype_name(kp.dtype), ", expected bool or i8 (true = padding)");
    ATTN_CHECK(kp.shape[0] == p.B && kp.shape[1] == p.Nk, shape, "params.key_padding_mask", "has shape ", kp.shape_string(),
               ", expected [B, Nk] = [", p.B, ", ", p.Nk, "]");
    ATTN_CHECK(kp.data != nullptr || kp.numel() == 0, layout, "params.key_padding_mask",
               "has a null data pointer, expected a data pointer");
    p.key_padding_mask = kp;
  }
}

void check_den(const TensorView& den, const LinearProblem& p, bool required) {
  if (!den.defined()) {
    ATTN_CHECK(!required, value, "den", "is not given, expected the forward's den (required by linear_attention_backward)");
    return;
  }
  ATTN_CHECK(den.rank == 3, shape, "den", "has rank ", den.rank, " (shape ", den.shape_string(),
             "), expected rank 3 [B, Hq, Nq]");
  ATTN_CHECK(den.dtype == DType::f32, dtype, "den", "has dtype ", dtype_name(den.dtype), ", expected f32");
  ATTN_CHECK(den.shape[0] == p.B && den.shape[1] == p.Hq && den.shape[2] == p.Nq, shape, "den", "has shape ",
             den.shape_string(), ", expected [B, Hq, Nq] = [", p.B, ", ", p.Hq, ", ", p.Nq, "]");
}

// q, k, v sizes without the mask (so the refusals come first and core sees no mask it would run).
LinearProblem sizes(const TensorView& q, const TensorView& k, const TensorView& v, const core::SdpaProblem& sp,
                    const LinearAttentionParams& params) {
  LinearProblem p;
  p.B = sp.B;
  p.Hq = sp.Hq;
  p.Hkv = sp.Hkv;
  p.G = sp.G;
  p.Nq = sp.Nq;
  p.Nk = sp.Nk;
  p.D = sp.D;
  p.Dv = sp.Dv;
  p.q = q;
  p.k = k;
  p.v = v;
  p.causal = params.mask.causal;
  p.Lk = sp.Lk;
  p.off.assign(static_cast<std::size_t>(p.B), 0);
  for (std::size_t b = 0; b < p.off.size(); ++b) p.off[b] = sp.off[b];  // Lk_b − Nq (bottom right) or 0
  check_params(p, params);
  return p;
}

SdpaParams sdpa_view(const LinearAttentionParams& params) {
  SdpaParams sp;
  sp.mask.causal = params.mask.causal;
  sp.mask.alignment = params.mask.alignment;
  sp.mask.k_lengths = params.mask.k_lengths;
  return sp;
}

void check_state(const LinearAttentionState& s, const LinearProblem& p, const char* s_name, const char* z_name,
                 bool required) {
  if (!s.S.defined() && !s.z.defined() && !required) return;
  ATTN_CHECK(s.S.defined(), value, s_name, "is not given, expected an f32 [B, Hkv, F, Dv] tensor");
  ATTN_CHECK(s.z.defined(), value, z_name, "is not given, expected an f32 [B, Hkv, F] tensor (it goes with ", s_name,
             ")");
  ATTN_CHECK(s.S.rank == 4, shape, s_name, "has rank ", s.S.rank, ", expected an f32 [B, Hkv, F, Dv] tensor");
  ATTN_CHECK(s.S.dtype == DType::f32, dtype, s_name, "has dtype ", dtype_name(s.S.dtype),
             ", expected an f32 [B, Hkv, F, Dv] tensor");
  ATTN_CHECK(s.S.shape[0] == p.B && s.S.shape[1] == p.Hkv && s.S.shape[2] == p.F && s.S.shape[3] == p.Dv, shape, s_name,
             "has shape ", s.S.shape_string(), ", expected [B, Hkv, F, Dv] = [", p.B, ", ", p.Hkv, ", ", p.F, ", ",
             p.Dv, "] (F = ", p.F, " features of ", feature_map_name(p.map), ")");
  ATTN_CHECK(s.z.rank == 3, shape, z_name, "has rank ", s.z.rank, ", expected an f32 [B, Hkv, F] tensor");
  ATTN_CHECK(s.z.dtype == DType::f32, dtype, z_name, "has dtype ", dtype_name(s.z.dtype),
             ", expected an f32 [B, Hkv, F] tensor");
  ATTN_CHECK(s.z.shape[0] == p.B && s.z.shape[1] == p.Hkv && s.z.shape[2] == p.F, shape, z_name, "has shape ",
             s.z.shape_string(), ", expected [B, Hkv, F] = [", p.B, ", ", p.Hkv, ", ", p.F, "]");
  ATTN_CHECK(s.S.data != nullptr && s.z.data != nullptr, layout, s_name,
             "or its z has a null data pointer, expected data pointers");
}

bool overlaps(const TensorView& a, const TensorView& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0) return false;
  auto [a0, a1] = a.byte_span();
  auto [b0, b1] = b.byte_span();
  return a0 < b1 && b0 < a1;
}

}  // namespace

bool LinearProblem::key_valid(std::int64_t b, std::int64_t j) const {
  if (j < 0 || j >= Lk[static_cast<std::size_t>(b)]) return false;
  if (!key_padding_mask.defined()) return true;
  const auto* m = static_cast<const std::uint8_t*>(key_padding_mask.data);
  return m[b * key_padding_mask.strides[0] + j * key_padding_mask.strides[1]] == 0;
}

double LinearProblem::favor_scale() const { return std::pow(static_cast<double>(D), -0.25); }

LinearProblem validate_forward(const LinearAttentionOutputs& o, const TensorView& q, const TensorView& k,
                               const TensorView& v, const LinearAttentionParams& params) {
  refuse_masks(params.mask);
  const SdpaParams sp = sdpa_view(params);
  const core::SdpaProblem s = core::validate_forward({o.out, {}, {}}, q, k, v, sp);
  LinearProblem p = sizes(q, k, v, s, params);
  check_den(o.den, p, false);
  // den's overlaps, through core's lse slot; den is f32 for every input dtype (check_den).
  if (o.den.defined()) core::validate_forward({o.out, o.den, {}}, q, k, v, sp, DType::f32);
  ATTN_CHECK(!overlaps(o.out, params.projection) && !overlaps(o.den, params.projection), layout, "out",
             "(or den) overlaps params.projection in memory, expected disjoint memory");
  return p;
}

LinearProblem validate_backward(const LinearAttentionGrads& g, const TensorView& dout, const TensorView& q,
                                const TensorView& k, const TensorView& v, const TensorView& out, const TensorView& den,
                                const LinearAttentionParams& params) {
  refuse_masks(params.mask);
  const SdpaParams sp = sdpa_view(params);
  const core::SdpaProblem s0 = core::validate_forward({out, {}, {}}, q, k, v, sp);
  LinearProblem p = sizes(q, k, v, s0, params);
  check_den(den, p, true);
  core::validate_backward({g.dq, g.dk, g.dv, {}}, dout, q, k, v, out, den, sp, {}, DType::f32);
  for (const TensorView* t : {&g.dq, &g.dk, &g.dv})
    ATTN_CHECK(!overlaps(*t, params.projection), layout, "dq",
               "(or dk, dv) overlaps params.projection in memory, expected disjoint memory");
  return p;
}

LinearProblem validate_step(const TensorView& out, const LinearAttentionState& state_out, const TensorView& q,
                            const TensorView& k, const TensorView& v, const LinearAttentionState& state_in,
                            const LinearAttentionParams& params) {
  refuse_masks(params.mask);
  ATTN_CHECK(params.mask.k_lengths.empty(), value, "params.mask.k_lengths",
             "is given, expected none (linear_attention_step does not use it; use key_padding_mask [B, T] to drop new "
             "keys)");
  SdpaParams sp;
  sp.mask.causal = true;
  sp.mask.alignment = Alignment::top_left;
  const core::SdpaProblem s = core::validate_forward({out, {}, {}}, q, k, v, sp);
  ATTN_CHECK(q.shape[2] == k.shape[2], shape, "k", "k.shape[2] = ", k.shape[2], ", expected ", q.shape[2],
             " = q.shape[2] (a step takes the same T new tokens for q, k and v)");
  LinearAttentionParams lp = params;
  lp.mask = {};
  lp.mask.causal = true;
  LinearProblem p = sizes(q, k, v, s, lp);
  check_state(state_in, p, "state_in.S", "state_in.z", false);
  check_state(state_out, p, "state_out.S", "state_out.z", true);
  const std::pair<const TensorView*, const char*> outs[] = {{&state_out.S, "state_out.S"},
                                                            {&state_out.z, "state_out.z"}};
  const std::pair<const TensorView*, const char*> ins[] = {
      {&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}, {&params.projection, "params.projection"}};
  for (auto [t, name] : outs)
    for (auto [in, in_name] : ins)
      ATTN_CHECK(!overlaps(*t, *in), layout, name, "overlaps ", in_name, " in memory, expected disjoint memory");
  ATTN_CHECK(!overlaps(state_out.S, state_out.z), layout, "state_out.z",
             "overlaps state_out.S in memory, expected disjoint memory");
  // state_in may be state_out (in place) but not partly overlap it.
  for (const TensorView* in : {&state_in.S, &state_in.z})
    for (const TensorView* o : {&state_out.S, &state_out.z}) {
      const bool same =
          in->data == o->data && in->rank == o->rank && in->shape == o->shape && in->strides == o->strides;
      ATTN_CHECK(same || !overlaps(*in, *o), layout, "state_out.S",
                 "partly overlaps state_in in memory, expected the same tensors (an in-place step) or disjoint ones");
    }
  p.state_in = state_in;
  p.state_out = state_out;
  return p;
}

}  // namespace attn::linear
