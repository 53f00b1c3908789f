// A fixed-seed training run of nn::RegressionTransformer with AdamW (src/nn/regression.cpp,
// optim.cpp): on a task a mean-pooled encoder can learn (the target is the mean of the sequence's
// values plus the fraction of type-1 tokens), the held-out loss must fall below 10 % of the
// trivial loss within 150 steps.

#include <gtest/gtest.h>

#include <random>

#include "attn/nn/optim.hpp"
#include "attn/nn/regression.hpp"

namespace attn::test {
namespace {

struct Set {
  std::vector<std::int64_t> ids;
  std::vector<float> feats, y;
};

Set make_set(std::int64_t B, std::int64_t L, std::uint64_t seed) {
  Set s;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::int64_t b = 0; b < B; ++b) {
    double y = 0;
    for (std::int64_t l = 0; l < L; ++l) {
      const std::int64_t t = static_cast<std::int64_t>(rng() % 2);
      const float x = u(rng);
      s.ids.push_back(t);
      s.feats.push_back(x);
      y += 2.0 * x + static_cast<double>(t);
    }
    s.y.push_back(static_cast<float>(y / static_cast<double>(L)));
  }
  return s;
}

TEST(Training, LossFallsBelowTenPercentOfTrivial) {
  nn::RegressionConfig rc;
  rc.vocab_size = 2;
  rc.num_features = 1;
  rc.encoder.num_layers = 1;
  rc.encoder.layer.embed_dim = 32;
  rc.encoder.layer.num_heads = 2;
  rc.encoder.layer.ffn_dim = 64;
  rc.encoder.layer.rotary = nn::RotaryConfig{};
  rc.seed = 1;
  nn::RegressionTransformer<float> model(rc);
  nn::AdamW opt(model);
  const nn::LrSchedule sched{3e-3, 10, 150, 1e-5};
  const std::int64_t B = 16, L = 12;
  const Set eval = make_set(128, L, 999);
  auto eval_loss = [&] {
    nn::RegressionBatch<float> b;
    b.B = 128;
    b.L = L;
    b.ids = eval.ids.data();
    b.features = eval.feats.data();
    model.set_training(false);
    const float* pred = model.forward(b);
    model.set_training(true);
    return nn::mse_loss(pred, eval.y.data(), 128, static_cast<float*>(nullptr));
  };
  double mean = 0, trivial = 0;
  for (float y : eval.y) mean += y / 128.0;
  for (float y : eval.y) trivial += (y - mean) * (y - mean) / 128.0;
  const double before = eval_loss();
  for (std::int64_t step = 0; step < 150; ++step) {
    const Set s = make_set(B, L, static_cast<std::uint64_t>(step));
    nn::RegressionBatch<float> b;
    b.B = B;
    b.L = L;
    b.ids = s.ids.data();
    b.features = s.feats.data();
    model.zero_grad();
    const float* pred = model.forward(b);
    std::vector<float> d(static_cast<std::size_t>(B));
    nn::mse_loss(pred, s.y.data(), B, d.data());
    model.backward(d.data());
    nn::clip_grad_norm(model, 1.0);
    opt.step(sched.at(step));
  }
  const double after = eval_loss();
  std::printf("trivial %.4f, eval loss before %.4f, after %.4f (%.4f of trivial)\n", trivial, before, after,
              after / trivial);
  EXPECT_LT(after, 0.1 * trivial);
}

}  // namespace
}  // namespace attn::test
