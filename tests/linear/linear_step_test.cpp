// Causal linear attention three ways: the recurrent decode (linear_attention_step one token at a
// time, carrying (S, z)), the chunked causal forward, and the masked prefix-sum formulas of
// linear_case.hpp, on odd lengths and across chunk boundaries; plus multi-token steps, the state's
// contents and in-place steps.

#include <gtest/gtest.h>

#include "cpu/sdpa_case.hpp"
#include "linear/linear_case.hpp"

namespace attn::test {
namespace {

struct State {
  GuardedTensor S, z;
  LinearAttentionState view() const { return {S.view, z.view}; }
};
State make_state(std::int64_t B, std::int64_t Hkv, std::int64_t F, std::int64_t Dv) {
  State s{make_tensor(DType::f32, {B, Hkv, F, Dv}), make_tensor(DType::f32, {B, Hkv, F})};
  return s;
}

// Runs steps of the given lengths over all N tokens; out gets every step's rows.
void run_steps(const Qkv& x, const LinearAttentionParams& params, const std::vector<std::int64_t>& pieces,
               const TensorView& out, State& st) {
  std::int64_t t0 = 0;
  LinearAttentionState in{};  // first step: zeros
  for (std::int64_t len : pieces) {
    State next = make_state(x.B, x.Hkv, linear_attention_features(params, x.D), x.Dv);
    linear_attention_step(slice_rows(out, t0, len), next.view(), slice_rows(x.q, t0, len), slice_rows(x.k, t0, len),
                          slice_rows(x.v, t0, len), in, params);
    st = std::move(next);
    in = st.view();
    t0 += len;
  }
  ASSERT_EQ(t0, x.Nq);
}

// The oracle and the final state's sums are computed once per case; the default (recurrent) causal
// forward and the decode run on every ISA, the chunked form (ATTN_LINEAR_CAUSAL=chunked, the same
// ISA-independent driver over each ISA's kernels) on the best ISA only.
TEST(LinearStep, DecodeEqualsChunkedCausalEqualsFormulas) {
  const std::vector<std::string> isas = supported_isas();
  for (FeatureMap map : {FeatureMap::elu, FeatureMap::favor})
    for (std::int64_t N : {1, 63, 65, 130}) {
      Qkv x = make_qkv(2, 4, 2, N, N, 16, 12, DType::f32, Layout::bshd, 21 + static_cast<std::uint64_t>(N));
      fill_normal(x.q.view, 5, 0.0, 0.5);
      fill_normal(x.k.view, 6, 0.0, 0.5);
      Projection proj = make_projection(24, 16, 7);
      LinearAttentionParams params;
      params.feature_map = map;
      if (map == FeatureMap::favor) params.projection = proj.t.view;
      params.mask.causal = true;
      const LinearOracle o = linear_oracle(x, spec_of(x, params, &proj));

      // The final state is Σ φ(k_j) v_jᵀ and Σ φ(k_j) over all keys.
      const LinearSpec spec = spec_of(x, params, &proj);
      const std::int64_t F = linear_attention_features(params, 16);
      std::vector<double> S(static_cast<std::size_t>(2 * 2 * F * 12), 0.0), z(static_cast<std::size_t>(2 * 2 * F), 0.0);
      for (std::int64_t b = 0; b < 2; ++b)
        for (std::int64_t kvh = 0; kvh < 2; ++kvh)
          for (std::int64_t j = 0; j < N; ++j) {
            const auto fk = phi_of(row_of(x.k, b, kvh, j), map, spec.omega, spec.m);
            const auto v = row_of(x.v, b, kvh, j);
            const std::int64_t base = b * 2 + kvh;
            for (std::int64_t f = 0; f < F; ++f) {
              z[static_cast<std::size_t>(base * F + f)] += fk[static_cast<std::size_t>(f)];
              for (std::int64_t d = 0; d < 12; ++d)
                S[static_cast<std::size_t>((base * F + f) * 12 + d)] +=
                    fk[static_cast<std::size_t>(f)] * v[static_cast<std::size_t>(d)];
            }
          }

      for (const std::string& isa : isas) {
        IsaScope scope(isa);
        GuardedTensor chunked = make_tensor4(DType::f32, 2, 4, N, 12);
        for (const char* form : kCausalForms) {
          if (std::string(form) == "chunked" && isa != isas.front()) continue;
          SCOPED_TRACE(isa + " " + form + " " + feature_map_name(map) + " N=" + std::to_string(N));
          CausalFormScope form_scope(form);
          linear_attention_forward({chunked.view, {}}, x.q, x.k, x.v, params);
          EXPECT_LT(max_rel_err(chunked.view, o, x), 2e-5);
        }
        SCOPED_TRACE(isa + " decode " + feature_map_name(map) + " N=" + std::to_string(N));
        LinearAttentionParams step_params = params;
        step_params.mask = {};
        GuardedTensor decoded = make_tensor4(DType::f32, 2, 4, N, 12);
        State st;
        run_steps(x, step_params, std::vector<std::int64_t>(static_cast<std::size_t>(N), 1), decoded.view, st);
        EXPECT_LT(max_rel_err(decoded.view, o, x), 2e-5);
        EXPECT_LT(max_abs_diff(decoded.view, chunked.view), 1e-5);
        double err = 0.0;
        for (std::int64_t b = 0; b < 2; ++b)
          for (std::int64_t kvh = 0; kvh < 2; ++kvh) {
            const std::int64_t base = b * 2 + kvh;
            for (std::int64_t f = 0; f < F; ++f) {
              const double zf = z[static_cast<std::size_t>(base * F + f)];
              err = std::max(err, std::abs(at(st.z.view, b, kvh, f) - zf) / (1 + std::abs(zf)));
              for (std::int64_t d = 0; d < 12; ++d) {
                const double sf = S[static_cast<std::size_t>((base * F + f) * 12 + d)];
                err = std::max(err, std::abs(at(st.S.view, b, kvh, f, d) - sf) / (1 + std::abs(sf)));
              }
            }
          }
        EXPECT_LT(err, 2e-5);
      }
    }
}

TEST(LinearStep, MultiTokenStepsAcrossChunkBoundaries) {
  const std::int64_t N = 200;
  Qkv x = make_qkv(1, 3, 1, N, N, 9, 70, DType::f32, Layout::bhsd, 31);
  LinearAttentionParams params;
  params.mask.causal = true;
  const LinearOracle o = linear_oracle(x, spec_of(x, params));
  params.mask = {};
  for (Backend backend : {Backend::reference, Backend::cpu}) {
    params.backend = backend;
    GuardedTensor out = make_tensor4(DType::f32, 1, 3, N, 70);
    State st;
    run_steps(x, params, {5, 59, 1, 65, 64, 6}, out.view, st);
    EXPECT_LT(max_rel_err(out.view, o, x), 2e-5) << backend_name(backend);
  }
}

TEST(LinearStep, InPlaceStateAndPaddedNewKeys) {
  Qkv x = make_qkv(2, 2, 2, 4, 4, 8, 8, DType::f32, Layout::bhsd, 41);
  LinearAttentionParams params;
  GuardedTensor kpm = make_tensor(DType::boolean, {2, 4});
  fill_value(kpm.view, 0.0);
  set(kpm.view, 1.0, 1, 2);
  params.key_padding_mask = kpm.view;
  // Expected: causal forward with the same padding.
  LinearAttentionParams fwd = params;
  fwd.mask.causal = true;
  const LinearOracle o = linear_oracle(x, spec_of(x, fwd));
  State st = make_state(2, 2, 8, 8);
  fill_value(st.S.view, 0.0);
  fill_value(st.z.view, 0.0);
  GuardedTensor out = make_tensor4(DType::f32, 2, 2, 4, 8);
  linear_attention_step(out.view, st.view(), x.q, x.k, x.v, st.view(), params);
  EXPECT_LT(max_rel_err(out.view, o, x), 2e-5);
}

}  // namespace
}  // namespace attn::test
