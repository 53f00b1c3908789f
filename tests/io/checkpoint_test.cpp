// Training checkpoints (src/io/checkpoint.cpp): a run resumed from a checkpoint continues exactly as
// the uninterrupted run (parameters and AdamW moments bit for bit); strict loading names what is
// missing; loading without an optimizer ignores its state.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "attn/error.hpp"
#include "attn/io/checkpoint.hpp"
#include "attn/nn/optim.hpp"
#include "attn/nn/regression.hpp"

namespace attn::test {
namespace {

nn::RegressionConfig config() {
  nn::RegressionConfig rc;
  rc.num_features = 1;
  rc.vocab_size = 3;
  rc.encoder.num_layers = 2;
  rc.encoder.layer.embed_dim = 16;
  rc.encoder.layer.num_heads = 2;
  rc.encoder.layer.ffn_dim = 32;
  rc.encoder.layer.dropout = 0.1;
  rc.encoder.layer.rotary = nn::RotaryConfig{};
  rc.seed = 9;
  return rc;
}

struct Data {
  std::vector<std::int64_t> ids;
  std::vector<float> feats, target;
};

Data make_data(std::int64_t B, std::int64_t L) {
  Data d;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::int64_t i = 0; i < B * L; ++i) {
    d.ids.push_back(static_cast<std::int64_t>(rng() % 3));
    d.feats.push_back(u(rng));
  }
  for (std::int64_t b = 0; b < B; ++b) d.target.push_back(u(rng));
  return d;
}

void train(nn::RegressionTransformer<float>& model, nn::AdamW& opt, const Data& d, std::int64_t B, std::int64_t L,
           int steps) {
  for (int s = 0; s < steps; ++s) {
    nn::RegressionBatch<float> batch;
    batch.B = B;
    batch.L = L;
    batch.ids = d.ids.data();
    batch.features = d.feats.data();
    batch.step = static_cast<std::uint64_t>(opt.steps());
    model.zero_grad();
    const float* pred = model.forward(batch);
    std::vector<float> dpred(static_cast<std::size_t>(B));
    nn::mse_loss(pred, d.target.data(), B, dpred.data());
    model.backward(dpred.data());
    nn::clip_grad_norm(model, 1.0);
    opt.step(1e-3);
  }
}

std::vector<float> flat(const nn::Module& m) {
  std::vector<float> v;
  for (const nn::Parameter& p : m.parameters())
    v.insert(v.end(), static_cast<float*>(p.value.data), static_cast<float*>(p.value.data) + p.value.numel());
  return v;
}

TEST(Checkpoint, ResumedRunEqualsUninterruptedRun) {
  const std::int64_t B = 4, L = 7;
  const Data d = make_data(B, L);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("attn_ckpt_" + std::to_string(::getpid()) + ".safetensors")).string();
  nn::RegressionTransformer<float> a(config());
  nn::AdamW oa(a);
  train(a, oa, d, B, L, 3);
  io::save_checkpoint(path, a, &oa, {{"model", "test"}});
  train(a, oa, d, B, L, 2);

  nn::RegressionConfig other = config();
  other.seed = 77;  // different initial weights: everything must come from the file
  nn::RegressionTransformer<float> b(other);
  nn::AdamW ob(b);
  const io::Metadata meta = io::load_checkpoint(path, b, &ob);
  EXPECT_EQ(meta.at("step"), "3");
  EXPECT_EQ(meta.at("model"), "test");
  EXPECT_EQ(ob.steps(), 3);
  train(b, ob, d, B, L, 2);
  const std::vector<float> fa = flat(a), fb = flat(b);
  ASSERT_EQ(fa.size(), fb.size());
  EXPECT_EQ(std::memcmp(fa.data(), fb.data(), fa.size() * sizeof(float)), 0);

  // Without an optimizer the moments are ignored; a model of another shape is refused by name.
  nn::RegressionTransformer<float> c(other);
  io::load_checkpoint(path, c);
  nn::RegressionConfig wider = config();
  wider.encoder.layer.ffn_dim = 48;
  nn::RegressionTransformer<float> w(wider);
  try {
    io::load_checkpoint(path, w);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.layers.0.linear1.weight"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace attn::test
