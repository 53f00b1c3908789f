// nn::Linear (src/nn/linear.cpp): forward against plain loops, backward against fp64 finite
// differences and the closed form, shapes and errors.

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <random>
#include <vector>

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

// db += Σ_rows dy split by column blocks between threads (large enough for the parallel branch,
// columns off the block width, strided rows): the serial in-order float sums, bit for bit.
TEST(Linear, BiasGradientIsTheSerialSumOnAnyThreadCount) {
  const std::int64_t M = 301, out = 131, in = 3, ldy = out + 5;
  std::vector<float> dy(static_cast<std::size_t>(M * ldy)), x(static_cast<std::size_t>(M * in)), db0(out);
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (float& v : dy) v = d(rng);
  for (float& v : x) v = d(rng);
  for (float& v : db0) v = d(rng);
  std::vector<float> serial = db0;
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t o = 0; o < out; ++o) serial[o] += dy[m * ldy + o];
  for (int threads : {1, 2, 3}) {
    nn::Linear<float> lin(in, out, true, 1);
    std::copy(db0.begin(), db0.end(), lin.bias_grad());
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    lin.backward(x.data(), in, dy.data(), ldy, M, nullptr, in);
    omp_set_num_threads(saved);
    EXPECT_EQ(std::vector<float>(lin.bias_grad(), lin.bias_grad() + out), serial) << threads << " threads";
  }
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
