// nn::Dropout (src/nn/dropout.cpp): the kept fraction and scale, backward replaying the forward's
// bits, reproducibility per (seed, stream, offset), identity when p = 0 or not training, errors.

#include <gtest/gtest.h>

#include <cmath>

#include "attn/error.hpp"
#include "attn/nn/dropout.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

TEST(Dropout, KeepsOneMinusPScaled) {
  const std::int64_t n = 100003;  // not a multiple of 4
  for (double p : {0.1, 0.5, 0.9}) {
    nn::Dropout<float> d(p, 42, 3);
    std::vector<float> x(n, 1.0f), y(n);
    d.forward(x.data(), n, y.data(), 7);
    std::int64_t kept = 0;
    for (float v : y) {
      if (v != 0.0f) {
        ++kept;
        ASSERT_FLOAT_EQ(v, static_cast<float>(1.0 / (1.0 - p)));
      }
    }
    const double sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(static_cast<double>(kept), n * (1 - p), 5 * sd) << p;
    for (std::int64_t i : {std::int64_t{0}, std::int64_t{5}, n - 1}) EXPECT_EQ(y[i] != 0.0f, d.keep(i, 7));
  }
}

TEST(Dropout, BackwardReplaysForwardAndCallsDiffer) {
  const std::int64_t n = 1001;
  nn::Dropout<double> d(0.3, 1, 0);
  const std::vector<double> x = randn(n, 2), dy = randn(n, 3);
  std::vector<double> y(n), dx(n), y2(n), y3(n);
  d.forward(x.data(), n, y.data(), 5);
  d.backward(dy.data(), n, dx.data(), 5);
  for (std::int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(y[i] == 0.0, dx[i] == 0.0) << i;
    if (y[i] != 0.0) {
      ASSERT_DOUBLE_EQ(dx[i] / dy[i], y[i] / x[i]);
    }
  }
  d.forward(x.data(), n, y2.data(), 5);
  EXPECT_EQ(y, y2);  // same offset: same bits
  d.forward(x.data(), n, y3.data(), 6);
  EXPECT_NE(y, y3);  // next call: other bits
  nn::Dropout<double> other_stream(0.3, 1, 1);
  other_stream.forward(x.data(), n, y3.data(), 5);
  EXPECT_NE(y, y3);
  // In place.
  std::vector<double> inplace = x;
  d.forward(inplace.data(), n, inplace.data(), 5);
  EXPECT_EQ(inplace, y);
}

TEST(Dropout, IdentityWhenOffAndErrors) {
  const std::vector<double> x = randn(10, 1);
  std::vector<double> y(10);
  nn::Dropout<double> zero(0.0);
  zero.forward(x.data(), 10, y.data(), 0);
  EXPECT_EQ(y, x);
  nn::Dropout<double> eval(0.5);
  eval.set_training(false);
  EXPECT_FALSE(eval.active());
  eval.forward(x.data(), 10, y.data(), 0);
  EXPECT_EQ(y, x);
  EXPECT_THROW(nn::Dropout<float>(1.0), Error);
  EXPECT_THROW(nn::Dropout<float>(-0.1), Error);
}

}  // namespace
}  // namespace attn::test
