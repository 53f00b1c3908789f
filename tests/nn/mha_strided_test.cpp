// Strided MultiheadAttention (MhaConfig::stride, make_attention("strided")): the strided module
// against the same dense module given the pattern as an explicit bool mask built here (outputs and
// every gradient; the dense module itself is checked against compositions and fp64 finite
// differences in mha_backward_test), with causal, key lengths, GQA/MQA, RoPE, both layouts and
// Lq ≠ Lk; the encoder layer's "strided" option; and the errors.

#include <gtest/gtest.h>

#include <cstdlib>

#include "attn/nn/decoder.hpp"
#include "attn/nn/make_attention.hpp"
#include "attn/nn/transformer.hpp"
#include "nn/mha_case.hpp"

namespace attn::test {
namespace {

template <class A, class B>
void copy_params(const A& from, const B& to) {
  const auto pf = from.parameters(), pt = to.parameters();
  ASSERT_EQ(pf.size(), pt.size());
  for (std::size_t i = 0; i < pf.size(); ++i)
    for_each_element(pf[i].value,
                     [&](const auto&, std::int64_t off) { store_f64(pt[i].value, off, load_f64(pf[i].value, off)); });
}

struct StridedCase {
  MhaCase c;
  std::int64_t stride, window, global_tokens;
};

// [B, 1, Lq, Lk] bool: the pattern of include/attn/sparse_attention.hpp, written out (query i at
// position i + off; keys past the row's length hidden).
GuardedTensor pattern(const StridedCase& sc, std::int64_t off, bool causal, const std::vector<std::int64_t>& lengths) {
  const MhaCase& c = sc.c;
  GuardedTensor m = make_tensor(DType::boolean, {c.B, 1, c.Lq, c.Lk});
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t i = 0; i < c.Lq; ++i)
      for (std::int64_t j = 0; j < c.Lk; ++j) {
        const std::int64_t p = i + off, d = p - j;
        bool keep = d % sc.stride == 0 || std::llabs(d) <= sc.window || j < sc.global_tokens ||
                    (p >= 0 && p < sc.global_tokens);
        if (causal && j > p) keep = false;
        if (!lengths.empty() && j >= lengths[static_cast<std::size_t>(b)]) keep = false;
        set(m.view, keep ? 1.0 : 0.0, b, 0, i, j);
      }
  return m;
}

std::vector<StridedCase> strided_cases() {
  std::vector<StridedCase> cs;
  auto add = [&](std::int64_t s, std::int64_t w, std::int64_t g, auto&& edit) {
    MhaCase c;
    c.E = 16;
    c.Hq = 4;
    c.Hkv = 4;
    c.B = 2;
    c.Lq = c.Lk = 13;
    edit(c);
    cs.push_back({c, s, w, g});
  };
  add(3, -1, 0, [](MhaCase&) {});
  add(2, 1, 1, [](MhaCase& c) {
    c.Hkv = 2;
    c.mask = MaskKind::causal;
  });
  add(4, 2, 0, [](MhaCase& c) {
    c.Hkv = 1;
    c.layout = SeqLayout::seq_first;
    c.mask = MaskKind::key_lengths;
    c.rope = Rope::half;
  });
  add(5, 0, 2, [](MhaCase& c) {
    c.B = 1;
    c.layout = SeqLayout::unbatched;
    c.Lq = c.Lk = 11;
  });
  add(3, 2, 1, [](MhaCase& c) {  // two sequences of unequal length, bottom-right aligned
    c.inputs = Inputs::cross;
    c.Lq = 5;
    c.Lk = 12;
    c.mask = MaskKind::causal_bottom_right;
  });
  return cs;
}

class MhaStrided : public ::testing::TestWithParam<StridedCase> {};

template <class T>
void check_against_pattern(const StridedCase& sc, double tol) {
  const MhaCase& c = sc.c;
  const DType dt = std::is_same_v<T, float> ? DType::f32 : DType::f64;
  nn::MhaConfig scfg = c.config();
  scfg.stride = sc.stride;
  scfg.window = sc.window;
  scfg.global_tokens = sc.global_tokens;
  const auto strided = nn::make_attention<T>("strided", scfg);
  nn::MultiheadAttention<T> plain(c.config());
  randomize_biases(*strided, 5);
  copy_params(*strided, plain);
  const MhaInputs in = make_inputs(c, dt, 3);
  MhaMasks mk = make_masks(c, 9);
  const std::int64_t off = c.mask == MaskKind::causal_bottom_right ? c.Lk - c.Lq : 0;
  nn::MhaOptions dense;  // the pattern (with causal and key lengths folded in) as one bool mask
  const GuardedTensor m = pattern(sc, off, mk.options.is_causal, mk.options.key_lengths);
  dense.attn_mask = m.view;
  dense.positions = mk.options.positions;
  if (c.Lq != c.Lk && !mk.options.causal_alignment) mk.options.causal_alignment = Alignment::top_left;
  const nn::MhaOutput os = strided->forward(in.query, in.key, in.value, mk.options);
  const nn::MhaOutput op = plain.forward(in.query, in.key, in.value, dense);
  EXPECT_LE(max_abs_diff(os.out.view(), op.out.view()), tol);
  GuardedTensor R = clone(os.out.view(), Layout::bhsd, dt);
  fill_normal(R.view, 17);
  strided->zero_grad();
  plain.zero_grad();
  const nn::MhaGrads gs = strided->backward(R.view), gp = plain.backward(R.view);
  EXPECT_LE(max_abs_diff(gs.dquery.view(), gp.dquery.view()), tol);
  if (gp.dkey.view().defined()) {
    EXPECT_LE(max_abs_diff(gs.dkey.view(), gp.dkey.view()), tol);
  }
  if (gp.dvalue.view().defined()) {
    EXPECT_LE(max_abs_diff(gs.dvalue.view(), gp.dvalue.view()), tol);
  }
  const auto ps = strided->parameters(), pp = plain.parameters();
  for (std::size_t i = 0; i < ps.size(); ++i) EXPECT_LE(max_abs_diff(ps[i].grad, pp[i].grad), tol) << ps[i].name;
}

TEST_P(MhaStrided, EqualsThePatternAsABoolMaskF64) { check_against_pattern<double>(GetParam(), 1e-12); }
TEST_P(MhaStrided, EqualsThePatternAsABoolMaskF32) { check_against_pattern<float>(GetParam(), 2e-5); }

INSTANTIATE_TEST_SUITE_P(Cases, MhaStrided, ::testing::ValuesIn(strided_cases()), [](const auto& p) {
  return p.param.c.name() + "_s" + std::to_string(p.param.stride) + "_w" + std::to_string(p.param.window + 1) + "_g" +
         std::to_string(p.param.global_tokens);
});

TEST(MhaStridedUse, EncoderLayerTakesStridedAttention) {
  nn::EncoderLayerConfig c;
  c.embed_dim = 16;
  c.num_heads = 2;
  c.attention = "strided";
  c.stride = 1;  // every key is in the one residue class: it must equal "mha"
  nn::TransformerEncoderLayer<double> strided(c);
  nn::EncoderLayerConfig d = c;
  d.attention = "mha";
  d.stride = 0;
  nn::TransformerEncoderLayer<double> plain(d);
  copy_params(strided, plain);
  GuardedTensor x = make_tensor(DType::f64, {2, 7, 16});
  fill_normal(x.view, 8);
  nn::EncoderCall call;
  call.key_lengths = {7, 5};
  const double* a = strided.forward(static_cast<const double*>(x.view.data), 2, 7, call);
  std::vector<double> ya(a, a + 2 * 7 * 16);
  const double* p = plain.forward(static_cast<const double*>(x.view.data), 2, 7, call);
  double err = 0;
  for (std::size_t i = 0; i < ya.size(); ++i) err = std::max(err, std::abs(ya[i] - p[i]));
  EXPECT_LE(err, 1e-12);
  nn::EncoderLayerConfig sparse = c;
  sparse.stride = 3;
  nn::TransformerEncoderLayer<double> s3(sparse);
  copy_params(plain, s3);
  const double* n = s3.forward(static_cast<const double*>(x.view.data), 2, 7, call);
  double diff = 0;
  for (std::size_t i = 0; i < ya.size(); ++i) diff = std::max(diff, std::abs(ya[i] - n[i]));
  EXPECT_GT(diff, 1e-3);  // a stride of 3 must change the result
}

TEST(MhaStridedUse, Errors) {
  nn::MhaConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  c.batch_first = true;
  auto expect = [](auto&& f, const char* argument, const char* text) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expect([&] { nn::make_attention("strided", c); }, "config.stride", "expected the stride s ≥ 1");
  nn::MhaConfig s = c;
  s.stride = 2;
  expect([&] { nn::make_attention("mha", s); }, "config.stride", "use type \"strided\"");
  nn::MhaConfig bad = c;
  bad.stride = -1;
  expect([&] { nn::MultiheadAttention<float> m(bad); }, "stride", "expected ≥ 1");
  bad = s;
  bad.dropout = 0.1;
  expect([&] { nn::MultiheadAttention<float> m(bad); }, "dropout", "strided");
  bad = c;
  bad.global_tokens = 2;
  expect([&] { nn::MultiheadAttention<float> m(bad); }, "global_tokens", "stride ≥ 1");
  nn::MultiheadAttention<float> m(s);
  GuardedTensor x = make_tensor(DType::f32, {1, 5, 8}), mask = make_tensor(DType::boolean, {5, 5});
  fill_normal(x.view, 1);
  fill_value(mask.view, 1.0);
  nn::MhaOptions o;
  o.attn_mask = mask.view;
  expect([&] { m.forward(x.view, x.view, x.view, o); }, "attn_mask", "strided");
  nn::MhaOptions w;
  w.need_weights = true;
  expect([&] { m.forward(x.view, x.view, x.view, w); }, "need_weights", "strided");
  KvCache cache = m.make_cache(1, 8);
  expect([&] { m.forward_cached(x.view, x.view, x.view, cache); }, "cache", "strided");
  expect([&] { m.project_kv(x.view); }, "memory", "strided");
  nn::EncoderLayerConfig d;
  d.embed_dim = 8;
  d.num_heads = 2;
  d.attention = "strided";
  d.stride = 2;
  expect([&] { nn::TransformerDecoderLayer<float> layer(d); }, "attention", "cross-attention");
}

}  // namespace
}  // namespace attn::test
