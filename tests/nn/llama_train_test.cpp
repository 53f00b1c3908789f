// nn::TrainableLlama and the LM loss (src/nn/llama_train.cpp): the end-to-end backward (embedding,
// stack, head and cross-entropy) against fp64 finite differences; checkpointing changes no
// gradient bit; a few AdamW steps, save_llama_pretrained, and LlamaForCausalLM::from_pretrained
// gives the trainer's logits (the python test adds transformers' LlamaForCausalLM on the same
// directory); the config.json writer round-trips; bad calls are errors.

#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/llama.hpp"
#include "attn/nn/llama_train.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/nn/optim.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

nn::LlamaConfig train_config(std::int64_t V = 11, std::int64_t E = 16, std::int64_t layers = 2) {
  nn::LlamaConfig c;
  c.vocab_size = V;
  c.hidden_size = E;
  c.intermediate_size = 12;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 100.0;
  return c;
}

std::vector<std::int64_t> random_ids(std::size_t n, std::int64_t V, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> ids(n);
  for (auto& id : ids) id = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(V));
  return ids;
}

TEST(CrossEntropy, KnownValueAndGradient) {
  // logits (0, ln 2, ln 3): softmax (1/6, 2/6, 3/6); target 2 -> loss ln 6 − ln 3 = ln 2.
  const double z[3] = {0.0, std::log(2.0), std::log(3.0)};
  const std::int64_t t = 2;
  double dz[3];
  EXPECT_NEAR(nn::cross_entropy(z, &t, 1, 3, dz), std::log(2.0), 1e-15);
  EXPECT_NEAR(dz[0], 1.0 / 6, 1e-15);
  EXPECT_NEAR(dz[1], 2.0 / 6, 1e-15);
  EXPECT_NEAR(dz[2], 3.0 / 6 - 1, 1e-15);
  // Large logits do not overflow; the mean over rows divides the gradient by M.
  const float big[4] = {1000.0f, 0.0f, 1000.0f, 1000.0f};
  const std::int64_t tt[2] = {0, 1};
  float dbig[4];
  EXPECT_NEAR(nn::cross_entropy(big, tt, 2, 2, dbig), 0.5 * std::log(2.0), 1e-6);
  EXPECT_NEAR(dbig[0], 0.0, 1e-7);
  EXPECT_NEAR(dbig[2], 0.25, 1e-7);
  EXPECT_NEAR(dbig[3], -0.25, 1e-7);
}

// The parallel path (M·V ≥ 2^15): the loss has the same bits on 1-3 threads, the gradient (written
// over the logits, as lm_train_step does) is (softmax − onehot)/M of an fp64 softmax written here.
TEST(CrossEntropy, SameLossOnAnyThreadCountAndGradientInPlace) {
  const std::int64_t M = 130, V = 256;
  const std::vector<double> zd = randn(static_cast<std::size_t>(M * V), 3, 4.0);
  std::vector<float> z(zd.begin(), zd.end());
  std::vector<std::int64_t> t(static_cast<std::size_t>(M));
  for (std::int64_t m = 0; m < M; ++m) t[static_cast<std::size_t>(m)] = (m * 37) % V;
  const int saved = omp_get_max_threads();
  double first = 0;
  for (int threads = 1; threads <= 3; ++threads) {
    omp_set_num_threads(threads);
    std::vector<float> g = z;
    const double loss = nn::cross_entropy(g.data(), t.data(), M, V, g.data());
    if (threads == 1) first = loss;
    EXPECT_EQ(loss, first) << threads << " threads";
    double want_loss = 0;
    for (std::int64_t m = 0; m < M; ++m) {
      const float* zr = z.data() + m * V;
      double mx = zr[0], s = 0;
      for (std::int64_t v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(zr[v]));
      for (std::int64_t v = 0; v < V; ++v) s += std::exp(zr[v] - mx);
      want_loss += (mx + std::log(s) - zr[t[static_cast<std::size_t>(m)]]) / M;
      for (std::int64_t v = 0; v < V; ++v) {
        const double want = (std::exp(zr[v] - mx) / s - (v == t[static_cast<std::size_t>(m)] ? 1.0 : 0.0)) / M;
        ASSERT_NEAR(g[static_cast<std::size_t>(m * V + v)], want, 1e-7 * std::abs(want) + 1e-12) << m << ", " << v;
      }
    }
    EXPECT_NEAR(loss, want_loss, 1e-12 * want_loss);
  }
  omp_set_num_threads(saved);
}

TEST(TrainableLlama, EndToEndBackwardMatchesFiniteDifferences) {
  const nn::LlamaConfig c = train_config();
  nn::TrainableLlama<double> model(c, 3);
  randomize_params(model, 21, 0.4);
  const std::int64_t B = 2, L = 5;
  const std::vector<std::int64_t> ids = random_ids(B * L, c.vocab_size, 1);
  const std::vector<std::int64_t> targets = random_ids(B * L, c.vocab_size, 2);
  auto loss = [&] {
    return nn::cross_entropy(model.forward(ids.data(), B, L), targets.data(), B * L, c.vocab_size,
                             static_cast<double*>(nullptr));
  };
  std::vector<double> dlogits(static_cast<std::size_t>(B * L * c.vocab_size));
  model.zero_grad();
  nn::cross_entropy(model.forward(ids.data(), B, L), targets.data(), B * L, c.vocab_size, dlogits.data());
  model.backward(dlogits.data());
  expect_param_grads(model, loss, 1e-7, "TrainableLlama");
}

std::vector<float> all_grads(const nn::Module& m) {
  std::vector<float> g;
  for (const nn::Parameter& p : m.parameters())
    g.insert(g.end(), static_cast<float*>(p.grad.data), static_cast<float*>(p.grad.data) + p.grad.numel());
  return g;
}

TEST(TrainableLlama, CheckpointingGivesTheSameGradientsBitForBit) {
  const nn::LlamaConfig c = train_config(40, 32, 3);
  const std::int64_t B = 2, L = 19;
  const std::vector<std::int64_t> ids = random_ids(B * L + 1, c.vocab_size, 5);
  std::vector<float> grads[2];
  std::int64_t saved[2];
  for (int ck = 0; ck < 2; ++ck) {
    nn::TrainableLlama<float> model(c, 1);
    model.set_checkpoint(ck == 1);
    const float* z = model.forward(ids.data(), B, L);
    saved[ck] = model.saved_bytes();
    std::vector<float> dz(static_cast<std::size_t>(B * L * c.vocab_size));
    nn::cross_entropy(z, ids.data() + 1, B * L, c.vocab_size, dz.data());
    model.backward(dz.data());
    grads[ck] = all_grads(model);
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)), 0);
  EXPECT_LT(saved[1], saved[0]);
}

TEST(TrainableLlama, SavedDirectoryLoadsInLlamaForCausalLMWithTheSameLogits) {
  nn::LlamaConfig c = train_config(50, 32, 2);
  c.max_position_embeddings = 64;
  nn::TrainableLlama<float> model(c, 9);
  nn::AdamW opt(model);
  const std::int64_t B = 3, L = 13;
  for (int step = 0; step < 4; ++step) {  // trained weights, not the initialisation
    const std::vector<std::int64_t> ids = random_ids(B * L + 1, c.vocab_size, 100 + step);
    model.zero_grad();
    std::vector<float> dz(static_cast<std::size_t>(B * L * c.vocab_size));
    nn::cross_entropy(model.forward(ids.data(), B, L), ids.data() + 1, B * L, c.vocab_size, dz.data());
    model.backward(dz.data());
    opt.step(3e-3);
  }
  // The names and shapes are LlamaForCausalLM's.
  std::map<std::string, std::string> expected, got;
  const nn::LlamaForCausalLM reference(c);
  for (const nn::Parameter& p : reference.parameters()) expected[p.name] = p.value.shape_string();
  for (const nn::Parameter& p : model.parameters()) got[p.name] = p.value.shape_string();
  EXPECT_EQ(got, expected);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("attn_llama_train_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  nn::save_llama_pretrained(dir.string(), c, model);
  nn::LlamaForCausalLM loaded = nn::LlamaForCausalLM::from_pretrained(dir.string());
  std::filesystem::remove_all(dir);
  const std::vector<std::int64_t> ids = random_ids(B * L, c.vocab_size, 7);
  const float* z = model.forward(ids.data(), B, L);
  const Tensor ref = loaded.forward(ids.data(), B, L);
  double worst = 0, scale = 0;
  for (std::int64_t i = 0; i < B * L * c.vocab_size; ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(z[i]) - ref.ptr<float>()[i]));
    scale = std::max(scale, std::abs(static_cast<double>(z[i])));
  }
  EXPECT_LE(worst, 1e-5) << "logits up to " << scale;
  EXPECT_GT(scale, 0.1);
}

// Loss per step of a fixed-seed run on a learnable sequence (a random period-23 pattern of 64 ids).
std::vector<double> train_losses(bool bf16, int steps) {
  const nn::MatmulPrecisionGuard guard(bf16 ? nn::MatmulPrecision::bf16 : nn::MatmulPrecision::f32);
  nn::LlamaConfig c = train_config(64, 64, 2);
  c.intermediate_size = 128;
  nn::TrainableLlama<float> model(c, 4);
  nn::AdamW opt(model);
  const std::vector<std::int64_t> pattern = random_ids(23, c.vocab_size, 8);
  const std::int64_t B = 4, L = 32;
  std::vector<std::int64_t> ids(B * L + 1);
  std::vector<float> dz(static_cast<std::size_t>(B * L * c.vocab_size));
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = pattern[(i + 5 * static_cast<std::size_t>(step)) % 23];
    model.zero_grad();
    losses.push_back(
        nn::cross_entropy(model.forward(ids.data(), B, L), ids.data() + 1, B * L, c.vocab_size, dz.data()));
    model.backward(dz.data());
    nn::clip_grad_norm(model, 1.0);
    opt.step(3e-3);
  }
  return losses;
}

constexpr double kBf16Tolerance = 0.03;  // relative; measured worst 0.005 (docs/training.md)

TEST(TrainableLlama, Bf16TrainingTracksF32) {
  if (!nn::bf16_matmul_available()) GTEST_SKIP() << "libattn built without oneDNN";
  const int steps = 40;
  const std::vector<double> f32 = train_losses(false, steps), bf16 = train_losses(true, steps);
  for (int s = 0; s < steps; ++s)
    EXPECT_LE(std::abs(bf16[s] - f32[s]), kBf16Tolerance * f32[s])
        << "step " << s << ": f32 " << f32[s] << ", bf16 " << bf16[s];
  double worst = 0;
  for (int s = 0; s < steps; ++s) worst = std::max(worst, std::abs(bf16[s] - f32[s]) / f32[s]);
  std::printf("bf16 vs f32 loss: worst relative difference %.4f over %d steps (f32 %.4f -> %.4f)\n", worst, steps,
              f32.front(), f32.back());
  EXPECT_LT(f32.back(), 0.25 * f32.front());  // the run learns, so the comparison means something
  EXPECT_LT(bf16.back(), 0.25 * bf16.front());
}

TEST(LlamaConfigJson, RoundTrips) {
  nn::LlamaConfig c = train_config(258, 48, 3);
  c.num_attention_heads = 6;
  c.num_key_value_heads = 3;
  c.intermediate_size = 130;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 12345.5;
  c.max_position_embeddings = 777;
  c.bos_token_id = 256;
  c.eos_token_ids = {257};
  const nn::LlamaConfig r = nn::parse_llama_config(nn::llama_config_json(c));
  EXPECT_EQ(r.vocab_size, c.vocab_size);
  EXPECT_EQ(r.hidden_size, c.hidden_size);
  EXPECT_EQ(r.intermediate_size, c.intermediate_size);
  EXPECT_EQ(r.num_hidden_layers, c.num_hidden_layers);
  EXPECT_EQ(r.num_attention_heads, c.num_attention_heads);
  EXPECT_EQ(r.num_key_value_heads, c.num_key_value_heads);
  EXPECT_EQ(r.head_dim, 8);
  EXPECT_EQ(r.rms_norm_eps, c.rms_norm_eps);
  EXPECT_EQ(r.rope_theta, c.rope_theta);
  EXPECT_EQ(r.max_position_embeddings, c.max_position_embeddings);
  EXPECT_EQ(r.bos_token_id, c.bos_token_id);
  EXPECT_EQ(r.eos_token_ids, c.eos_token_ids);
  EXPECT_FALSE(r.tie_word_embeddings);
}

TEST(TrainableLlama, BadCallsAreErrors) {
  nn::LlamaConfig tied = train_config();
  tied.tie_word_embeddings = true;
  EXPECT_THROW(nn::TrainableLlama<float>(tied, 0), Error);
  nn::LlamaConfig bias = train_config();
  bias.mlp_bias = true;
  EXPECT_THROW(nn::TrainableLlama<float>(bias, 0), Error);
  nn::LlamaConfig heads = train_config();
  heads.num_key_value_heads = 3;
  EXPECT_THROW(nn::TrainableLlama<float>(heads, 0), Error);
  nn::TrainableLlama<float> model(train_config(), 0);
  const std::int64_t bad[2] = {1, 11};
  try {
    model.forward(bad, 1, 2);
    ADD_FAILURE() << "no error for id 11 with vocab_size 11";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ids[1] = 11"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model.backward(nullptr), Error);  // before any forward
  const float z[2] = {0, 0};
  const std::int64_t t = 2;
  EXPECT_THROW(nn::cross_entropy(z, &t, 1, 2, static_cast<float*>(nullptr)), Error);
}

}  // namespace
}  // namespace attn::test
