// Training checkpoints (src/io/checkpoint.cpp): a run resumed from a checkpoint continues exactly as
// the uninterrupted run (parameters and AdamW moments bit for bit); strict loading names what is
// missing; loading without an optimizer ignores its state; buffers (FAVOR+'s projection) travel with
// the parameters.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "attn/error.hpp"
#include "attn/io/checkpoint.hpp"
#include "attn/io/module_state.hpp"
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
  // Other initial embedding and head weights: they must come from the file. (The layers' seed
  // stays: it also seeds their dropout masks, which are configuration, not checkpointed state.)
  other.seed = 77;
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

// FAVOR+'s random projection is a buffer: a model built from another seed (other projections, so
// other outputs) that loads the file computes the saved model's outputs bit for bit, and a state
// dict without it is refused by name.
TEST(Checkpoint, FavorProjectionIsSavedAndLoaded) {
  const std::int64_t B = 3, L = 9;
  const Data d = make_data(B, L);
  nn::RegressionConfig rc = config();
  rc.encoder.layer.attention = "linear";
  rc.encoder.layer.feature_map = FeatureMap::favor;
  rc.encoder.layer.dropout = 0.0;
  nn::RegressionTransformer<float> a(rc);
  rc.seed = 77;
  rc.encoder.layer.seed = 77;  // the layers' seed: their weights and FAVOR+ projections
  nn::RegressionTransformer<float> b(rc);
  const auto predict = [&](nn::RegressionTransformer<float>& m) {
    nn::RegressionBatch<float> batch;
    batch.B = B;
    batch.L = L;
    batch.ids = d.ids.data();
    batch.features = d.feats.data();
    const float* p = m.forward(batch);
    return std::vector<float>(p, p + B);
  };
  a.set_training(false);
  b.set_training(false);

  const std::vector<nn::Buffer> buffers = a.buffers();
  ASSERT_EQ(buffers.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const nn::MultiheadAttention<float>* mha = a.encoder().layer(i).attention();
    ASSERT_NE(mha, nullptr);
    const TensorView w = mha->feature_projection();
    EXPECT_EQ(buffers[std::size_t(i)].name, "encoder.layers." + std::to_string(i) + ".self_attn.projection");
    EXPECT_EQ(buffers[std::size_t(i)].value.data, w.data);
    EXPECT_EQ(w.shape_string(), "[17, 8]");  // m = ⌈8·ln 8⌉ features of head_dim 8
  }
  const io::StateDict sd = io::state_dict(a);
  EXPECT_EQ(sd.size(), a.parameters().size() + 2);
  EXPECT_TRUE(sd.contains("encoder.layers.1.self_attn.projection"));

  // Only the projections differ once the parameters are loaded: the outputs still differ.
  io::StateDict params_only;
  for (const nn::Parameter& p : a.parameters()) params_only.insert_copy(p.name, p.value);
  const io::LoadReport partial = io::load_state_dict(b, params_only, /*strict=*/false);
  ASSERT_EQ(partial.missing.size(), 2u) << partial.describe();
  EXPECT_EQ(partial.missing[0], "encoder.layers.0.self_attn.projection");
  EXPECT_NE(predict(a), predict(b));
  try {
    io::load_state_dict(b, params_only);
    FAIL() << "a strict load without the projections";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.layers.0.self_attn.projection"), std::string::npos) << e.what();
  }

  const std::string path =
      (std::filesystem::temp_directory_path() / ("attn_favor_" + std::to_string(::getpid()) + ".safetensors")).string();
  io::save_checkpoint(path, a);
  io::load_checkpoint(path, b);
  std::remove(path.c_str());
  EXPECT_EQ(predict(a), predict(b));

  // elu has no buffers: its state dict is its parameters.
  rc.encoder.layer.feature_map = FeatureMap::elu;
  nn::RegressionTransformer<float> e(rc);
  EXPECT_TRUE(e.buffers().empty());
  EXPECT_EQ(io::state_dict(e).size(), e.parameters().size());
}

}  // namespace
}  // namespace attn::test
