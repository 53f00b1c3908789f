// Linear attention's refusals and validation: every mask the linear form cannot express is refused
// with an attn::Error naming the field, saying why and pointing to softmax attention; bad
// projections, eps, den, key padding and states are named too.

#include <gtest/gtest.h>

#include <functional>

#include "attn/error.hpp"

#include "linear/linear_case.hpp"

namespace attn::test {
namespace {

struct Call {
  Qkv x = make_qkv(2, 2, 1, 5, 6, 4, 3, DType::f32);
  GuardedTensor out = make_tensor4(DType::f32, 2, 2, 5, 3);
  GuardedTensor den = make_tensor(DType::f32, {2, 2, 5});
};

// Runs fn, expects an attn::Error whose argument is `arg` and whose message contains `part`.
void expect_error(const std::function<void()>& fn, const std::string& arg, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming " << arg;
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), arg) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(LinearValidate, MasksTheLinearFormCannotExpressAreRefused) {
  Call c;
  GuardedTensor bm = make_tensor(DType::boolean, {5, 6});
  fill_value(bm.view, 1.0);
  GuardedTensor bias = make_tensor(DType::f32, {5, 6});
  fill_value(bias.view, 0.0);
  const std::vector<std::pair<std::function<void(MaskSpec&)>, std::string>> cases = {
      {[&](MaskSpec& m) { m.bool_mask = bm.view; }, "params.mask.bool_mask"},
      {[&](MaskSpec& m) { m.bias = bias.view; }, "params.mask.bias"},
      {[](MaskSpec& m) { m.window_left = 3; }, "params.mask.window_left"},
      {[](MaskSpec& m) { m.window_right = 2; }, "params.mask.window_right"},

      {[](MaskSpec& m) {
         m.alibi_slopes = {0.5, 0.25};
       },
       "params.mask.alibi_slopes"},
      {[](MaskSpec& m) { m.softcap = 30.0; }, "params.mask.softcap"},
      {[](MaskSpec& m) { m.block_mask = BlockMask{}; }, "params.mask.block_mask"},
      {[](MaskSpec& m) { m.mask_mod = [](std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return true; }; },
       "params.mask.mask_mod"},
      {[](MaskSpec& m) {
         m.score_mod.value = [](double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return s; };
       },
       "params.mask.score_mod"},
  };
  for (const auto& [set_mask, arg] : cases) {
    LinearAttentionParams p;
    set_mask(p.mask);
    expect_error(
        [&] {
          linear_attention_forward({c.out.view, c.den.view}, c.x.q, c.x.k, c.x.v, p);
        },
        arg, "attn::sdpa_forward");
    expect_error(
        [&] {
          linear_attention_forward({c.out.view, c.den.view}, c.x.q, c.x.k, c.x.v, p);
        },
        arg, "not expressible by linear attention");
  }
  LinearAttentionParams p;
  p.mask.window_left = 3;
  expect_error(
      [&] {
        linear_attention_forward({c.out.view, {}}, c.x.q, c.x.k, c.x.v, p);
      },
      "params.mask.window_left", "a key would have to leave the running sum");
}

// A causal call with Nq != Nk has no default alignment (docs/contract.md §5), as in sdpa; with
// Nq = Nk, or without causal, nothing need be stated.
TEST(LinearValidate, CausalWithNqNotNkNeedsAnAlignment) {
  Call c;  // Nq = 5, Nk = 6
  LinearAttentionParams p;
  p.mask.causal = true;
  expect_error(
      [&] {
        linear_attention_forward({c.out.view, c.den.view}, c.x.q, c.x.k, c.x.v, p);
      },
      "params.mask.alignment", "expected top_left");
  expect_error(
      [&] {
        linear_attention_forward({c.out.view, c.den.view}, c.x.q, c.x.k, c.x.v, p);
      },
      "params.mask.alignment", "bottom_right");
  for (Alignment a : {Alignment::top_left, Alignment::bottom_right}) {
    p.mask.alignment = a;
    EXPECT_NO_THROW(linear_attention_forward({c.out.view, c.den.view}, c.x.q, c.x.k, c.x.v, p));
  }
  Qkv sq = make_qkv(1, 2, 1, 4, 4, 4, 3, DType::f32);
  GuardedTensor out = make_tensor4(DType::f32, 1, 2, 4, 3);
  LinearAttentionParams square;
  square.mask.causal = true;
  EXPECT_NO_THROW(linear_attention_forward({out.view, {}}, sq.q, sq.k, sq.v, square));
}

// den is f32 for every input dtype, f64 included (the fp64 reference recomputes it in the backward
// rather than reading it), although an SDPA lse of f64 inputs is f64.
TEST(LinearValidate, DenIsF32ForF64Inputs) {
  Qkv x = make_qkv(1, 2, 1, 4, 4, 4, 3, DType::f64);
  GuardedTensor out = make_tensor4(DType::f64, 1, 2, 4, 3), den = make_tensor(DType::f32, {1, 2, 4});
  EXPECT_NO_THROW(linear_attention_forward({out.view, den.view}, x.q, x.k, x.v, {}));
  GuardedTensor dq = make_tensor4(DType::f64, 1, 2, 4, 4), dk = make_tensor4(DType::f64, 1, 1, 4, 4),
                dv = make_tensor4(DType::f64, 1, 1, 4, 3);
  EXPECT_NO_THROW(linear_attention_backward({dq.view, dk.view, dv.view}, out.view, x.q, x.k, x.v, out.view, den.view, {}));
  GuardedTensor den64 = make_tensor(DType::f64, {1, 2, 4});
  expect_error(
      [&] {
        linear_attention_forward({out.view, den64.view}, x.q, x.k, x.v, {});
      },
      "den", "expected f32");
}

TEST(LinearValidate, BadArgumentsAreNamed) {
  Call c;
  auto fwd = [&](const LinearAttentionParams& p) {
    return [&c, p] { linear_attention_forward({c.out.view, c.den.view}, c.x.q, c.x.k, c.x.v, p); };
  };
  LinearAttentionParams p;
  p.feature_map = FeatureMap::favor;
  expect_error(fwd(p), "params.projection", "favor_projection");
  GuardedTensor w = make_tensor(DType::f32, {8, 5});
  p.projection = w.view;
  expect_error(fwd(p), "params.projection", "head dim D");
  p = {};
  p.eps = 0.0;
  expect_error(fwd(p), "params.eps", "expected a finite value > 0");
  p = {};
  GuardedTensor kpm = make_tensor(DType::boolean, {2, 5});
  p.key_padding_mask = kpm.view;
  expect_error(fwd(p), "params.key_padding_mask", "expected [B, Nk] = [2, 6]");
  p = {};
  GuardedTensor kf = make_tensor(DType::f32, {2, 6});
  p.key_padding_mask = kf.view;
  expect_error(fwd(p), "params.key_padding_mask", "expected bool or i8");
  // q/k/v/out shapes go through the SDPA validation.
  GuardedTensor bad_out = make_tensor4(DType::f32, 2, 2, 5, 4);
  expect_error(
      [&] {
        linear_attention_forward({bad_out.view, {}}, c.x.q, c.x.k, c.x.v, {});
      },
      "out", "value head dim Dv");
  GuardedTensor bad_den = make_tensor(DType::f32, {2, 2, 4});
  expect_error(
      [&] {
        linear_attention_forward({c.out.view, bad_den.view}, c.x.q, c.x.k, c.x.v, {});
      },
      "den", "[B, Hq, Nq]");
  // The backward needs den.
  GuardedTensor dq = make_tensor4(DType::f32, 2, 2, 5, 4), dk = make_tensor4(DType::f32, 2, 1, 6, 4),
                dv = make_tensor4(DType::f32, 2, 1, 6, 3);
  expect_error(
      [&] {
        linear_attention_backward({dq.view, dk.view, dv.view}, c.out.view, c.x.q, c.x.k, c.x.v, c.out.view, {}, {});
      },
      "den", "required");
}

TEST(LinearValidate, StepChecksItsState) {
  Qkv x = make_qkv(1, 2, 1, 1, 1, 4, 3, DType::f32);
  GuardedTensor out = make_tensor4(DType::f32, 1, 2, 1, 3);
  GuardedTensor S = make_tensor(DType::f32, {1, 1, 4, 3}), z = make_tensor(DType::f32, {1, 1, 4});
  GuardedTensor badS = make_tensor(DType::f32, {1, 2, 4, 3});
  expect_error(
      [&] {
        linear_attention_step(out.view, {badS.view, z.view}, x.q, x.k, x.v, {}, {});
      },
      "state_out.S", "expected [B, Hkv, F, Dv] = [1, 1, 4, 3]");
  expect_error(
      [&] {
        linear_attention_step(out.view, {S.view, z.view}, x.q, x.k, x.v, {badS.view, z.view}, {});
      },
      "state_in.S", "expected [B, Hkv, F, Dv]");
  LinearAttentionParams p;
  p.mask.window_left = 4;
  expect_error(
      [&] {
        linear_attention_step(out.view, {S.view, z.view}, x.q, x.k, x.v, {}, p);
      },
      "params.mask.window_left", "sdpa_forward");
  EXPECT_NO_THROW(linear_attention_step(out.view, {S.view, z.view}, x.q, x.k, x.v, {}, {}));
}

}  // namespace
}  // namespace attn::test
