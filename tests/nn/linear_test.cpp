// nn::Linear (src/nn/linear.cpp): forward against plain loops, backward against fp64 finite
// differences and the closed form, shapes and errors.

#include <gtest/gtest.h>

#include "attn/error.hpp"
#include "attn/nn/linear.hpp"
#include "nn/nn_test_util.hpp"

namespace attn::test {
namespace {

TEST(Linear, ForwardMatchesLoopsStridedInput) {
  for (bool bias : {true, false}) {
    nn::Linear<float> lin(7, 5, bias, 3);
    if (bias) fill_uniform(lin.parameter("bias").value, 4);
    // x [3, 4, 7] read through an inner stride of 2 (copied) and as a dense view (in place).
    GuardedTensor wide = make_tensor(DType::f32, {3, 4, 14});
    fill_normal(wide.view, 5);
    TensorView strided = wide.view;
    strided.shape[2] = 7;
    strided.strides[2] = 2;
    const GuardedTensor dense = clone(strided, Layout::bhsd, DType::f32);
    for (const TensorView& x : {strided, dense.view}) {
      const Tensor y = lin.forward(x);
      ASSERT_EQ(y.view().shape_string(), "[3, 4, 5]");
      double err = 0;
      for (std::int64_t a = 0; a < 3; ++a)
        for (std::int64_t b = 0; b < 4; ++b)
          for (std::int64_t o = 0; o < 5; ++o) {
            double acc = bias ? at(lin.parameter("bias").value, o) : 0.0;
            for (std::int64_t i = 0; i < 7; ++i) acc += at(lin.parameter("weight").value, o, i) * at(x, a, b, i);
            err = std::max(err, std::abs(acc - at(y.view(), a, b, o)));
          }
      EXPECT_LE(err, 1e-5) << "bias " << bias;
    }
  }
}

TEST(Linear, BackwardMatchesFiniteDifferences) {
  nn::Linear<double> lin(6, 4, true, 1);
  fill_uniform(lin.parameter("bias").value, 2);
  GuardedTensor x = make_tensor(DType::f64, {5, 6}), R = make_tensor(DType::f64, {5, 4});
  fill_normal(x.view, 3);
  fill_normal(R.view, 4);
  auto loss = [&] {
    const Tensor y = lin.forward(x.view);
    double s = 0;
    for_each_element(y.view(), [&](const auto& idx, std::int64_t off) {
      s += load_f64(y.view(), off) * at(R.view, idx[0], idx[1]);
    });
    return s;
  };
  lin.zero_grad();
  const Tensor dx = lin.backward(x.view, R.view);
  auto check = [&](const TensorView& t, const TensorView& g, const char* what) {
    for_each_element(t, [&](const auto& idx, std::int64_t off) {
      const double v = load_f64(t, off), h = 1e-6;
      store_f64(t, off, v + h);
      const double lp = loss();
      store_f64(t, off, v - h);
      const double lm = loss();
      store_f64(t, off, v);
      EXPECT_NEAR(load_f64(g, g.offset({idx[0], idx[1]})), (lp - lm) / (2 * h), 1e-7) << what;
    });
  };
  check(x.view, dx.view(), "dx");
  for (const nn::Parameter& p : lin.parameters()) check(p.value, p.grad, p.name.c_str());
}

TEST(Linear, ParametersAndErrors) {
  const nn::Linear<float> lin(3, 2, false);
  ASSERT_EQ(lin.parameters().size(), 1u);
  EXPECT_EQ(lin.num_parameters(), 6);
  const double bound = 1.0 / std::sqrt(3.0);
  EXPECT_LE(max_abs(lin.parameter("weight").value), bound);
  GuardedTensor bad = make_tensor(DType::f32, {4, 5});
  EXPECT_THROW(lin.forward(bad.view), Error);
  GuardedTensor f64 = make_tensor(DType::f64, {4, 3});
  EXPECT_THROW(lin.forward(f64.view), Error);
  EXPECT_THROW(nn::Linear<float>(0, 2), Error);
}

}  // namespace
}  // namespace attn::test
