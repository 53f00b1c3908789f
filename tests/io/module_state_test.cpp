// State dicts of attn::nn::MultiheadAttention against the upstream modules: each fixture
// (tests/io/make_fixtures.py) holds a torch / Hugging Face module's float64 weights under its own
// names, an input x and that module's output y. Loaded through the name map into attn's module,
// the forward gives y; the module's state dict mapped back gives the upstream weights.

#include "attn/io/module_state.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "attn/nn/multihead_attention.hpp"
#include "io/io_test_util.hpp"

namespace {

using attn::io::NameMap;
using attn::io::StateDict;

struct Fixture {
  const char* file;
  NameMap map;
};

class ModuleState : public testing::TestWithParam<Fixture> {};

TEST_P(ModuleState, UpstreamWeightsGiveUpstreamOutputs) {
  const Fixture fx = GetParam();
  const std::string path = (std::filesystem::path(ATTN_SOURCE_DIR) / "tests/io/fixtures" / fx.file).string();
  const StateDict file = attn::io::load_state_dict(path);
  const auto meta = [&](const char* key, double fallback) {
    const auto it = file.metadata.find(key);
    return it == file.metadata.end() ? fallback : std::stod(it->second);
  };
  const attn::TensorView x = file.at("x").view(), y = file.at("y").view();
  attn::nn::MhaConfig cfg;
  cfg.embed_dim = x.shape[2];
  cfg.num_heads = std::int64_t(meta("heads", 1));
  cfg.num_kv_heads = std::int64_t(meta("kv_heads", 0));
  cfg.batch_first = true;
  cfg.bias = fx.map != NameMap::llama;
  if (fx.map == NameMap::llama) cfg.rotary = attn::nn::RotaryConfig{0, meta("rope_theta", 10000.0), attn::nn::RotaryConvention::half_split};
  attn::nn::MultiheadAttention<double> mha(cfg);
  const attn::io::NameMapOptions options{"model.", 0};
  const attn::io::LoadReport report = attn::io::load_state_dict(mha, file, fx.map, /*strict=*/false, options);
  EXPECT_TRUE(report.missing.empty()) << report.describe();
  EXPECT_TRUE(report.mismatched.empty()) << report.describe();
  std::vector<std::string> unexpected = report.unexpected;
  std::sort(unexpected.begin(), unexpected.end());
  if (fx.map == NameMap::hf_bert)  // the residual's LayerNorm is not attention's
    EXPECT_EQ(unexpected, (std::vector<std::string>{"output.LayerNorm.bias", "output.LayerNorm.weight"}));
  else
    EXPECT_TRUE(report.ok()) << report.describe();
  attn::nn::MhaOptions opts;
  opts.is_causal = meta("causal", 0) != 0;
  mha.set_training(false);
  const attn::Tensor out = mha.forward(x, x, x, opts).out;
  ASSERT_EQ(out.view().shape_string(), y.shape_string());
  double err = 0, scale = 0;
  for (std::int64_t e = 0; e < out.numel(); ++e) {
    err = std::max(err, std::abs(attn::load_f64(out, e) - attn::load_f64(y, e)));
    scale = std::max(scale, std::abs(attn::load_f64(y, e)));
  }
  // RoPE: transformers and attn both tabulate cos/sin in fp32 (docs/nn.md), rounded differently.
  const double tol = fx.map == NameMap::llama ? 1e-6 : 1e-12;
  EXPECT_LT(err, tol * std::max(1.0, scale)) << fx.file;
  EXPECT_GT(scale, 0.1) << "the fixture's output is not trivial";
  // Back: attn's parameters under the upstream names are the upstream tensors.
  const StateDict back = attn::io::from_canonical(attn::io::state_dict(mha), fx.map, options);
  for (const auto& [name, t] : back.items()) {
    const attn::TensorView want = file.at(name).view();
    ASSERT_EQ(t.view().shape_string(), want.shape_string()) << name;
    EXPECT_EQ(std::memcmp(t.data(), want.data, std::size_t(t.numel()) * 8), 0) << name;
  }
  EXPECT_GE(back.size(), 4u);
}

INSTANTIATE_TEST_SUITE_P(Upstream, ModuleState,
                         testing::Values(Fixture{"torch_mha.safetensors", NameMap::torch},
                                         Fixture{"hf_bert.safetensors", NameMap::hf_bert},
                                         Fixture{"gpt2.safetensors", NameMap::gpt2},
                                         Fixture{"llama.safetensors", NameMap::llama}),
                         [](const auto& p) { return std::string(attn::io::name_map_name(p.param.map)); });

TEST(ModuleState, StrictLoadIntoAModuleNamesEveryProblem) {
  attn::nn::MhaConfig cfg;
  cfg.embed_dim = 8;
  cfg.num_heads = 2;
  cfg.num_kv_heads = 1;
  attn::nn::MultiheadAttention<float> mha(cfg);
  StateDict sd = attn::io::state_dict(mha);
  StateDict wrong;
  for (const auto& [name, t] : sd.items())
    if (name == "k_proj.weight")
      wrong.insert(name, attn::Tensor(attn::DType::f32, {8, 8}));
    else if (name != "out_proj.bias")
      wrong.insert_copy(name, t.view());
  wrong.insert("extra", attn::Tensor(attn::DType::f32, {1}));
  EXPECT_EQ(attn::io::test::error_of([&] { (void)attn::io::load_state_dict(mha, wrong); }),
            "state_dict: missing keys: out_proj.bias; unexpected keys: extra; wrong shapes or dtypes: k_proj.weight "
            "expected [4, 8] f32, got [8, 8] f32, expected exactly the module's keys with their shapes and dtypes "
            "(strict load)");
  EXPECT_TRUE(attn::io::load_state_dict(mha, sd).ok());
}

}  // namespace
