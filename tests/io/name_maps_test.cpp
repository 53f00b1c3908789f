// Name maps: every map's foreign layout against canonical values computed from the same index
// formula (fused tensors split in the right rows, Conv1D weights transposed), and round trips.

#include "attn/io/name_maps.hpp"

#include <gtest/gtest.h>

#include "io/io_test_util.hpp"

namespace {

using attn::DType;
using attn::io::NameMap;
using attn::io::NameMapOptions;
using attn::io::StateDict;
using attn::io::test::at;
using attn::io::test::error_of;
using attn::io::test::formula;

double f(std::int64_t i, std::int64_t j) { return double(i * 100 + j); }
double g(std::int64_t i, std::int64_t j) { return double(-i * 100 - j) - 0.5; }
double small(std::int64_t i, std::int64_t j) { return double(i * 8 + j) - 64; }  // exact in bf16

// Every element of `v` (rank 1 or 2) equals want(i, j).
void expect_all(const attn::TensorView& v, const std::function<double(std::int64_t, std::int64_t)>& want,
                const std::string& name) {
  const std::int64_t rows = v.shape[0], cols = v.rank == 2 ? v.shape[1] : 1;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) ASSERT_EQ(at(v, i, j), want(i, j)) << name << " (" << i << ", " << j << ")";
}

void expect_same(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.names(), b.names());
  for (const auto& [name, t] : a.items()) {
    const attn::TensorView& u = b.at(name).view();
    ASSERT_EQ(t.view().shape_string(), u.shape_string()) << name;
    ASSERT_EQ(t.dtype(), u.dtype) << name;
    ASSERT_EQ(std::memcmp(t.data(), u.data, std::size_t(t.numel()) * attn::dtype_size(u.dtype)), 0) << name;
  }
}

TEST(NameMaps, TorchFusedInProjSplitsInThreeAndFusesBack) {
  const std::int64_t E = 6;
  StateDict foreign;
  foreign.insert("layer.in_proj_weight", formula(DType::f32, {3 * E, E}, f));
  foreign.insert("layer.in_proj_bias", formula(DType::f32, {3 * E}, g));
  foreign.insert("layer.out_proj.weight", formula(DType::f32, {E, E}, g));
  foreign.insert("layer.out_proj.bias", formula(DType::f32, {E}, f));
  foreign.insert("layer.bias_k", formula(DType::f32, {1, 1, E}, f));
  foreign.insert("other.weight", formula(DType::f32, {2}, f));  // outside the prefix: left out
  const StateDict c = attn::io::to_canonical(foreign, NameMap::torch, {.prefix = "layer."});
  EXPECT_EQ(c.names(), (std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias",
                                                 "k_proj.bias", "v_proj.bias", "out_proj.weight", "out_proj.bias",
                                                 "bias_k"}));
  expect_all(c.at("q_proj.weight"), [](auto i, auto j) { return f(i, j); }, "q");
  expect_all(c.at("k_proj.weight"), [&](auto i, auto j) { return f(E + i, j); }, "k");
  expect_all(c.at("v_proj.weight"), [&](auto i, auto j) { return f(2 * E + i, j); }, "v");
  expect_all(c.at("v_proj.bias"), [&](auto i, auto) { return g(2 * E + i, 0); }, "v bias");
  expect_all(c.at("out_proj.weight"), g, "out");
  StateDict expected;
  for (const auto& [name, t] : foreign.items())
    if (name.rfind("layer.", 0) == 0) expected.insert_copy(name, t.view());
  expect_same(attn::io::from_canonical(c, NameMap::torch, {.prefix = "layer."}), expected);
}

TEST(NameMaps, TorchSeparateWeightsAndGqaKvDim) {
  const std::int64_t E = 8, Ekv = 4, kdim = 5, vdim = 3;
  StateDict foreign;
  foreign.insert("q_proj_weight", formula(DType::f64, {E, E}, f));
  foreign.insert("k_proj_weight", formula(DType::f64, {E, kdim}, g));
  foreign.insert("v_proj_weight", formula(DType::f64, {E, vdim}, f));
  foreign.insert("in_proj_bias", formula(DType::f64, {3 * E}, g));
  const StateDict c = attn::io::to_canonical(foreign, NameMap::torch);
  EXPECT_EQ(c.at("k_proj.weight").view().shape_string(), "[8, 5]");
  expect_all(c.at("k_proj.bias"), [&](auto i, auto) { return g(E + i, 0); }, "k bias");
  expect_same(attn::io::from_canonical(c, NameMap::torch), foreign);  // shapes differ: not fused
  // attn's GQA module fuses [E + 2·Ekv, E]: q_dim says where to cut.
  StateDict gqa;
  gqa.insert("in_proj_weight", formula(DType::f32, {E + 2 * Ekv, E}, f));
  const StateDict cg = attn::io::to_canonical(gqa, NameMap::torch, {.prefix = "", .q_dim = E});
  EXPECT_EQ(cg.at("q_proj.weight").view().shape_string(), "[8, 8]");
  expect_all(cg.at("v_proj.weight"), [&](auto i, auto j) { return f(E + Ekv + i, j); }, "v");
  EXPECT_NE(error_of([&] { (void)attn::io::to_canonical(gqa, NameMap::torch); })
                .find("in_proj_weight: has 16 fused q/k/v rows, expected a multiple of 3"),
            std::string::npos);
  // 16 rows with q_dim 16 leave no k/v rows; q_dim 7 leaves an odd rest.
  for (std::int64_t q_dim : {16, 7})
    EXPECT_NE(error_of([&] { (void)attn::io::to_canonical(gqa, NameMap::torch, {.prefix = "", .q_dim = q_dim}); })
                  .find("expected q_dim = " + std::to_string(q_dim) + " rows"),
              std::string::npos);
  StateDict rank1;
  rank1.insert("in_proj_weight", formula(DType::f32, {6}, f));
  EXPECT_NE(error_of([&] { (void)attn::io::to_canonical(rank1, NameMap::torch); }).find("expected rank 2"),
            std::string::npos);
}

TEST(NameMaps, HfBertRenamesAndKeepsUnknownKeys) {
  const std::int64_t E = 4;
  StateDict foreign;
  const char* names[] = {"self.query", "self.key", "self.value", "output.dense"};
  for (const char* n : names) {
    foreign.insert(std::string("enc.0.attention.") + n + ".weight", formula(DType::f32, {E, E}, f));
    foreign.insert(std::string("enc.0.attention.") + n + ".bias", formula(DType::f32, {E}, g));
  }
  foreign.insert("enc.0.attention.output.LayerNorm.weight", formula(DType::f32, {E}, f));
  const StateDict c = attn::io::to_canonical(foreign, NameMap::hf_bert, {.prefix = "enc.0.attention."});
  EXPECT_EQ(c.names(), (std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                                 "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias",
                                                 "output.LayerNorm.weight"}));
  expect_same(attn::io::from_canonical(c, NameMap::hf_bert, {.prefix = "enc.0.attention."}), foreign);
}

TEST(NameMaps, LlamaRenamesOProjAndDropsInvFreq) {
  const std::int64_t E = 8, Ekv = 4;
  StateDict foreign;
  foreign.insert("q_proj.weight", formula(DType::bf16, {E, E}, small));
  foreign.insert("k_proj.weight", formula(DType::bf16, {Ekv, E}, small));
  foreign.insert("v_proj.weight", formula(DType::bf16, {Ekv, E}, small));
  foreign.insert("o_proj.weight", formula(DType::bf16, {E, E}, small));
  foreign.insert("rotary_emb.inv_freq", formula(DType::f32, {2}, small));
  const StateDict c = attn::io::to_canonical(foreign, NameMap::llama);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight"}));
  expect_all(c.at("out_proj.weight"), small, "o");
  StateDict expected;
  for (const auto& [name, t] : foreign.items())
    if (name != "rotary_emb.inv_freq") expected.insert_copy(name, t.view());
  expect_same(attn::io::from_canonical(c, NameMap::llama), expected);
}

TEST(NameMaps, Gpt2Conv1DIsTransposedAndSplit) {
  const std::int64_t E = 6;
  StateDict foreign;
  foreign.insert("h.0.attn.c_attn.weight", formula(DType::f32, {E, 3 * E}, f));  // [in, out]
  foreign.insert("h.0.attn.c_attn.bias", formula(DType::f32, {3 * E}, g));
  foreign.insert("h.0.attn.c_proj.weight", formula(DType::f32, {E, E}, g));
  foreign.insert("h.0.attn.c_proj.bias", formula(DType::f32, {E}, f));
  foreign.insert("h.0.attn.bias", formula(DType::f32, {1, 1, 4, 4}, f));  // the causal-mask buffer
  const StateDict c = attn::io::to_canonical(foreign, NameMap::gpt2, {.prefix = "h.0.attn."});
  EXPECT_EQ(c.names(), (std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias",
                                                 "k_proj.bias", "v_proj.bias", "out_proj.weight", "out_proj.bias"}));
  // q = x·W[:, 0:E] = x·(W[:, 0:E]ᵀ)ᵀ: canonical q (i, j) = c_attn (j, i), k (i, j) = c_attn (j, E + i).
  expect_all(c.at("q_proj.weight"), [](auto i, auto j) { return f(j, i); }, "q");
  expect_all(c.at("k_proj.weight"), [&](auto i, auto j) { return f(j, E + i); }, "k");
  expect_all(c.at("v_proj.weight"), [&](auto i, auto j) { return f(j, 2 * E + i); }, "v");
  expect_all(c.at("k_proj.bias"), [&](auto i, auto) { return g(E + i, 0); }, "k bias");
  expect_all(c.at("out_proj.weight"), [](auto i, auto j) { return g(j, i); }, "out");
  StateDict expected;
  for (const auto& [name, t] : foreign.items())
    if (name != "h.0.attn.bias") expected.insert_copy(name, t.view());
  expect_same(attn::io::from_canonical(c, NameMap::gpt2, {.prefix = "h.0.attn."}), expected);
  StateDict partial;
  partial.insert("q_proj.weight", formula(DType::f32, {E, E}, f));
  EXPECT_NE(error_of([&] { (void)attn::io::from_canonical(partial, NameMap::gpt2); }).find("expected all three or none"),
            std::string::npos);
}

TEST(NameMaps, WqkvoBothSpellingsAndGqaShapes) {
  const std::int64_t E = 8, Ekv = 2;  // MQA-like: W_K, W_V are [Hkv·hd, E]
  StateDict foreign;
  foreign.insert("W_Q", formula(DType::f32, {E, E}, f));
  foreign.insert("W_K", formula(DType::f32, {Ekv, E}, g));
  foreign.insert("W_V", formula(DType::f32, {Ekv, E}, f));
  foreign.insert("W_O", formula(DType::f32, {E, E}, g));
  foreign.insert("b_Q", formula(DType::f32, {E}, g));
  const StateDict c = attn::io::to_canonical(foreign, NameMap::wqkvo);
  EXPECT_EQ(c.names(),
            (std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight", "q_proj.bias"}));
  expect_all(c.at("k_proj.weight"), g, "k");
  expect_same(attn::io::from_canonical(c, NameMap::wqkvo), foreign);
  StateDict linear_style;
  linear_style.insert("W_Q.weight", formula(DType::f32, {E, E}, f));
  linear_style.insert("W_O.bias", formula(DType::f32, {E}, f));
  const StateDict cl = attn::io::to_canonical(linear_style, NameMap::wqkvo);
  EXPECT_EQ(cl.names(), (std::vector<std::string>{"q_proj.weight", "out_proj.bias"}));
  StateDict both;
  both.insert("W_Q", formula(DType::f32, {E, E}, f));
  both.insert("W_Q.weight", formula(DType::f32, {E, E}, f));
  EXPECT_NE(error_of([&] { (void)attn::io::to_canonical(both, NameMap::wqkvo); }).find("\"q_proj.weight\", which the state dict already has"),
            std::string::npos);
}

TEST(NameMaps, NamesOfTheMaps) {
  for (NameMap m : {NameMap::torch, NameMap::hf_bert, NameMap::llama, NameMap::gpt2, NameMap::wqkvo})
    EXPECT_EQ(attn::io::parse_name_map(attn::io::name_map_name(m)), m);
  EXPECT_EQ(error_of([] { (void)attn::io::parse_name_map("bert"); }),
            "names: is \"bert\", expected one of torch, hf_bert, llama, gpt2, wqkvo");
}

}  // namespace
