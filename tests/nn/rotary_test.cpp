// nn::RotaryEmbedding (src/nn/rotary.cpp): forward against the formula written in the test for
// both conventions, partial rotary_dim, per-row position offsets, strided views; backward is the
// transpose (⟨R x, g⟩ = ⟨x, Rᵀ g⟩) and inverts the forward; errors.

#include <gtest/gtest.h>

#include "attn/error.hpp"
#include "attn/nn/rotary.hpp"
#include "nn/nn_test_util.hpp"

namespace attn::test {
namespace {

struct RopeCase {
  nn::RotaryConvention convention;
  std::int64_t rotary_dim;  // 0 = head dim
  std::vector<std::int64_t> offsets;
  Layout layout;
};

class Rotary : public ::testing::TestWithParam<RopeCase> {};

TEST_P(Rotary, ForwardMatchesFormula) {
  const RopeCase rc = GetParam();
  nn::RotaryConfig cfg;
  cfg.convention = rc.convention;
  cfg.rotary_dim = rc.rotary_dim;
  cfg.base = 500.0;
  const nn::RotaryEmbedding rope(10, cfg);
  for (DType dt : {DType::f32, DType::f64}) {
    GuardedTensor x = make_tensor4(dt, 2, 3, 9, 10, rc.layout);
    fill_normal(x.view, 1);
    GuardedTensor want = clone(x.view);
    naive_rope(want.view, cfg, rc.offsets);
    rope.forward(x.view, rc.offsets);
    EXPECT_LE(max_abs_diff(x.view, want.view), dt == DType::f32 ? 2e-6 : 1e-12) << dtype_name(dt);
    EXPECT_TRUE(x.guards_intact());
    // Dims past rotary_dim pass through, and rotating back recovers the input (to fp32 cos/sin,
    // whose cos² + sin² is 1 within fp32 rounding).
    rope.backward(x.view, rc.offsets);
    GuardedTensor orig = make_tensor4(DType::f64, 2, 3, 9, 10, rc.layout);
    fill_normal(orig.view, 1);
    EXPECT_LE(max_abs_diff(x.view, orig.view), 2e-6);
  }
}

TEST_P(Rotary, BackwardIsTheTranspose) {
  const RopeCase rc = GetParam();
  nn::RotaryConfig cfg;
  cfg.convention = rc.convention;
  cfg.rotary_dim = rc.rotary_dim;
  const nn::RotaryEmbedding rope(10, cfg);
  GuardedTensor x = make_tensor4(DType::f64, 2, 3, 9, 10, rc.layout), g = make_tensor4(DType::f64, 2, 3, 9, 10);
  fill_normal(x.view, 2);
  fill_normal(g.view, 3);
  const GuardedTensor x0 = clone(x.view), g0 = clone(g.view);
  rope.forward(x.view, rc.offsets);   // R x
  rope.backward(g.view, rc.offsets);  // Rᵀ g
  double lhs = 0, rhs = 0;
  for_each_element(x.view, [&](const auto& i, std::int64_t) {
    lhs += at(x.view, i[0], i[1], i[2], i[3]) * at(g0.view, i[0], i[1], i[2], i[3]);
    rhs += at(x0.view, i[0], i[1], i[2], i[3]) * at(g.view, i[0], i[1], i[2], i[3]);
  });
  EXPECT_NEAR(lhs, rhs, 1e-10);
}

INSTANTIATE_TEST_SUITE_P(Cases, Rotary,
                         ::testing::Values(RopeCase{nn::RotaryConvention::half_split, 0, {}, Layout::bhsd},
                                           RopeCase{nn::RotaryConvention::interleaved, 0, {4}, Layout::bshd},
                                           RopeCase{nn::RotaryConvention::half_split, 6, {3, 11}, Layout::bshd},
                                           RopeCase{nn::RotaryConvention::interleaved, 4, {0, 7}, Layout::bhsd}),
                         [](const auto& param_info) {
                           const RopeCase& c = param_info.param;
                           return std::string(nn::rotary_convention_name(c.convention)) + "_rd" +
                                  std::to_string(c.rotary_dim) + "_off" + std::to_string(c.offsets.size()) + "_" +
                                  layout_name(c.layout);
                         });

TEST(RotaryEmbedding, KnownValueAtPositionOne) {
  // Half split, head dim 4, base 10000: pair 0 turns by 1 rad, pair 1 by 10000^(-1/2) = 0.01 rad.
  const nn::RotaryEmbedding rope(4);
  GuardedTensor x = make_tensor4(DType::f64, 1, 1, 2, 4);
  fill_value(x.view, 1.0);
  rope.forward(x.view);
  EXPECT_DOUBLE_EQ(at(x.view, 0, 0, 0, 0), 1.0);  // position 0: unchanged
  EXPECT_NEAR(at(x.view, 0, 0, 1, 0), std::cos(1.0) - std::sin(1.0), 1e-6);
  EXPECT_NEAR(at(x.view, 0, 0, 1, 2), std::cos(1.0) + std::sin(1.0), 1e-6);
  EXPECT_NEAR(at(x.view, 0, 0, 1, 1), std::cos(0.01) - std::sin(0.01), 1e-6);
}

TEST(RotaryEmbedding, Errors) {
  nn::RotaryConfig odd;
  odd.rotary_dim = 5;
  EXPECT_THROW(nn::RotaryEmbedding(8, odd), Error);
  nn::RotaryConfig wide;
  wide.rotary_dim = 10;
  EXPECT_THROW(nn::RotaryEmbedding(8, wide), Error);
  nn::RotaryConfig base;
  base.base = 0;
  EXPECT_THROW(nn::RotaryEmbedding(8, base), Error);
  const nn::RotaryEmbedding rope(8);
  GuardedTensor x = make_tensor4(DType::f32, 2, 1, 3, 6);
  EXPECT_THROW(rope.forward(x.view), Error);  // head dim 6 ≠ 8
  GuardedTensor y = make_tensor4(DType::f32, 2, 1, 3, 8);
  EXPECT_THROW(rope.forward(y.view, {1, 2, 3}), Error);  // 3 offsets for B = 2
}

}  // namespace
}  // namespace attn::test
