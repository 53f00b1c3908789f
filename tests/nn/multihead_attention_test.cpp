// MultiheadAttention forward (src/nn/mha_forward.cpp, src/nn/multihead_attention.cpp) against a
// composition written in the test (naive GEMM loops, RoPE from its formula, reference SDPA), in
// f32 and f64, for MHA/GQA/MQA, self/cross, every layout, masks, RoPE, dropout, need_weights;
// parameter names and shapes.

#include <gtest/gtest.h>

#include "nn/mha_case.hpp"

namespace attn::test {
namespace {

std::vector<MhaCase> forward_cases() {
  std::vector<MhaCase> cs;
  auto add = [&](auto&& edit) {
    MhaCase c;
    edit(c);
    cs.push_back(c);
  };
  add([](MhaCase&) {});
  add([](MhaCase& c) {
    c.Hkv = 2;
    c.E = 24;
    c.B = 3;
    c.layout = SeqLayout::seq_first;
    c.mask = MaskKind::causal;
    c.rope = Rope::half;
  });
  add([](MhaCase& c) {
    c.Hkv = 1;
    c.B = 1;
    c.Lq = c.Lk = 7;
    c.layout = SeqLayout::unbatched;
    c.mask = MaskKind::bool2d;
    c.rope = Rope::interleaved;
  });
  add([](MhaCase& c) {
    c.inputs = Inputs::cross;
    c.Lq = 5;
    c.Lk = 9;
    c.kdim = 12;
    c.vdim = 10;
    c.bias = false;
    c.mask = MaskKind::float4d;
  });
  add([](MhaCase& c) {
    c.inputs = Inputs::cross_shared_kv;
    c.Hkv = 2;
    c.Lq = 3;
    c.Lk = 8;
    c.kdim = c.vdim = 20;
    c.mask = MaskKind::key_lengths;
    c.layout = SeqLayout::seq_first;
  });
  add([](MhaCase& c) {
    c.inputs = Inputs::cross;
    c.Lq = 3;
    c.Lk = 7;
    c.mask = MaskKind::causal_bottom_right;
    c.rope = Rope::half;
  });
  add([](MhaCase& c) {
    c.inputs = Inputs::cross;
    c.Lq = 6;
    c.Lk = 4;
    c.mask = MaskKind::causal_top_left;
    c.Hkv = 1;
  });
  add([](MhaCase& c) {
    c.E = 65;
    c.Hq = 5;
    c.Hkv = 5;
    c.B = 1;
    c.Lq = c.Lk = 63;
    c.mask = MaskKind::causal;
  });
  add([](MhaCase& c) {
    c.E = 24;
    c.Hq = 6;
    c.Hkv = 3;
    c.Lq = c.Lk = 65;
    c.B = 1;
    c.strided = true;
    c.rope = Rope::half;
    c.positions = {5};
  });
  add([](MhaCase& c) {
    c.dropout = 0.3;
    c.Lq = c.Lk = 17;
    c.Hkv = 2;
  });
  add([](MhaCase& c) {
    c.inputs = Inputs::cross;
    c.strided = true;
    c.layout = SeqLayout::seq_first;
    c.Lk = 7;
    c.rope = Rope::interleaved;
    c.positions = {2, 9};
  });
  return cs;
}

template <class T>
void check_forward(const MhaCase& c, bool need_weights, bool average, double tol) {
  constexpr DType dt = sizeof(T) == 4 ? DType::f32 : DType::f64;
  nn::MultiheadAttention<T> m(c.config());
  randomize_biases(m, 11);
  const MhaInputs in = make_inputs(c, dt, 21);
  MhaMasks mk = make_masks(c, 31);
  mk.options.need_weights = need_weights;
  mk.options.average_attn_weights = average;
  const nn::MhaOutput r = m.forward(in.query, in.key, in.value, mk.options);
  const RefMha ref = reference_mha(m, in.q, in.k, in.v, mk.params, c.positions);
  EXPECT_LE(max_abs_diff(from_module(r.out, c.layout), ref.out), tol) << c.name();
  EXPECT_TRUE(in.tq.guards_intact());
  if (!need_weights) {
    EXPECT_FALSE(r.weights.view().defined());
    return;
  }
  const bool batched = c.layout != SeqLayout::unbatched;
  ASSERT_EQ(r.weights.view().rank, (batched ? 1 : 0) + (average ? 2 : 3)) << c.name();
  double err = 0;
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t i = 0; i < c.Lq; ++i)
      for (std::int64_t j = 0; j < c.Lk; ++j) {
        double mean = 0;
        for (std::int64_t h = 0; h < c.Hq; ++h) {
          const double p = at(ref.probs.view, b, h, i, j);
          mean += p / static_cast<double>(c.Hq);
          if (!average) {
            const double got = batched ? at(r.weights, b, h, i, j) : at(r.weights, h, i, j);
            err = std::max(err, std::abs(got - p));
          }
        }
        if (average) err = std::max(err, std::abs((batched ? at(r.weights, b, i, j) : at(r.weights, i, j)) - mean));
      }
  EXPECT_LE(err, tol) << c.name();
}

class MhaForward : public ::testing::TestWithParam<MhaCase> {};

TEST_P(MhaForward, F32MatchesComposition) { check_forward<float>(GetParam(), false, true, 5e-5); }
TEST_P(MhaForward, F64MatchesComposition) { check_forward<double>(GetParam(), false, true, 1e-11); }
TEST_P(MhaForward, AveragedWeights) { check_forward<float>(GetParam(), true, true, 5e-5); }
TEST_P(MhaForward, PerHeadWeights) { check_forward<double>(GetParam(), true, false, 1e-11); }

INSTANTIATE_TEST_SUITE_P(Cases, MhaForward, ::testing::ValuesIn(forward_cases()),
                         [](const auto& param_info) { return param_info.param.name(); });

TEST(MhaParameters, NamesAndShapes) {
  nn::MhaConfig c;
  c.embed_dim = 12;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.kdim = 5;
  c.vdim = 7;
  const nn::MultiheadAttention<float> m(c);
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> want = {
      {"q_proj.weight", {12, 12}}, {"q_proj.bias", {12}}, {"k_proj.weight", {6, 5}},     {"k_proj.bias", {6}},
      {"v_proj.weight", {6, 7}},   {"v_proj.bias", {6}},  {"out_proj.weight", {12, 12}}, {"out_proj.bias", {12}}};
  const std::vector<nn::Parameter> ps = m.parameters();
  ASSERT_EQ(ps.size(), want.size());
  for (std::size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(ps[i].name, want[i].first);
    ASSERT_EQ(ps[i].value.rank, static_cast<int>(want[i].second.size())) << ps[i].name;
    for (int a = 0; a < ps[i].value.rank; ++a) EXPECT_EQ(ps[i].value.shape[a], want[i].second[a]) << ps[i].name;
    EXPECT_EQ(ps[i].grad.numel(), ps[i].value.numel());
  }
}

TEST(MhaParameters, XavierUniformWeightsZeroBiasesSeeded) {
  nn::MhaConfig c;
  c.embed_dim = 64;
  c.num_heads = 4;
  c.num_kv_heads = 1;
  const nn::MultiheadAttention<float> a(c), b(c);
  c.seed = 1;
  const nn::MultiheadAttention<float> other(c);
  for (const char* name : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight"}) {
    const TensorView w = a.parameter(name).value;
    const double bound = std::sqrt(6.0 / static_cast<double>(w.shape[0] + w.shape[1]));
    double maxabs = 0, sum2 = 0;
    for_each_element(w, [&](const auto&, std::int64_t off) {
      const double x = load_f64(w, off);
      maxabs = std::max(maxabs, std::abs(x));
      sum2 += x * x;
    });
    EXPECT_LE(maxabs, bound) << name;
    EXPECT_GT(maxabs, 0.9 * bound) << name;
    // U(-a, a) has variance a²/3.
    EXPECT_NEAR(sum2 / static_cast<double>(w.numel()), bound * bound / 3.0, 0.15 * bound * bound / 3.0) << name;
    EXPECT_EQ(max_abs_diff(w, b.parameter(name).value), 0.0) << name;
    EXPECT_GT(max_abs_diff(w, other.parameter(name).value), 0.0) << name;
  }
  for (const char* name : {"q_proj.bias", "k_proj.bias", "v_proj.bias", "out_proj.bias"})
    EXPECT_EQ(max_abs(a.parameter(name).value), 0.0) << name;
}

TEST(MhaParameters, UnknownNameListsTheNames) {
  nn::MhaConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  const nn::MultiheadAttention<float> m(c);
  try {
    m.parameter("in_proj_weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj.weight, q_proj.bias"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attn::test
