// Local (sliding-window) MultiheadAttention (MhaConfig::window, make_attention("local")): the
// window against the same module without it given the band as an explicit bool mask (outputs and
// every gradient), window 0 against its closed form out_i = W_o(W_v x_i + b_v) + b_o, Lq ≠ Lk with
// an alignment, cached decoding against the full causal forward, the encoder layer, and errors.

#include <gtest/gtest.h>

#include <cstdlib>

#include "attn/nn/make_attention.hpp"
#include "attn/nn/decoder.hpp"
#include "attn/nn/transformer.hpp"
#include "nn/mha_case.hpp"

namespace attn::test {
namespace {

// Copies every parameter of `from` into `to` (same kinds and shapes).
template <class A, class B>
void copy_params(const A& from, const B& to) {
  const auto pf = from.parameters(), pt = to.parameters();
  ASSERT_EQ(pf.size(), pt.size());
  for (std::size_t i = 0; i < pf.size(); ++i)
    for_each_element(pf[i].value, [&](const auto&, std::int64_t off) { store_f64(pt[i].value, off, load_f64(pf[i].value, off)); });
}

// [Lq, Lk] bool, true where key j is within `w` of query i (aligned at `off`: i + off vs j).
GuardedTensor band(std::int64_t Lq, std::int64_t Lk, std::int64_t w, std::int64_t off) {
  GuardedTensor m = make_tensor(DType::boolean, {Lq, Lk});
  for (std::int64_t i = 0; i < Lq; ++i)
    for (std::int64_t j = 0; j < Lk; ++j) set(m.view, std::llabs(i + off - j) <= w ? 1.0 : 0.0, i, j);
  return m;
}

struct LocalCase {
  MhaCase c;
  std::int64_t window;
};

std::vector<LocalCase> local_cases() {
  std::vector<LocalCase> cs;
  auto add = [&](std::int64_t w, auto&& edit) {
    MhaCase c;
    c.E = 16;
    c.Hq = 4;
    c.Hkv = 4;
    c.B = 2;
    c.Lq = c.Lk = 9;
    edit(c);
    cs.push_back({c, w});
  };
  add(2, [](MhaCase&) {});
  add(1, [](MhaCase& c) {
    c.Hkv = 2;
    c.mask = MaskKind::causal;
  });
  add(3, [](MhaCase& c) {
    c.Hkv = 1;
    c.layout = SeqLayout::seq_first;
    c.mask = MaskKind::key_lengths;
    c.rope = Rope::half;
  });
  add(0, [](MhaCase& c) {
    c.B = 1;
    c.layout = SeqLayout::unbatched;
    c.Lq = c.Lk = 7;
  });
  add(4, [](MhaCase& c) {  // cross-attention of two sequences of unequal length, bottom-right aligned
    c.inputs = Inputs::cross;
    c.Lq = 4;
    c.Lk = 11;
    c.mask = MaskKind::causal_bottom_right;
  });
  return cs;
}

class MhaLocal : public ::testing::TestWithParam<LocalCase> {};

template <class T>
void check_against_band(const LocalCase& lc, double tol) {
  const MhaCase& c = lc.c;
  const DType dt = std::is_same_v<T, float> ? DType::f32 : DType::f64;
  nn::MhaConfig lcfg = c.config();
  lcfg.window = lc.window;
  const auto local = nn::make_attention<T>("local", lcfg);
  nn::MultiheadAttention<T> plain(c.config());
  randomize_biases(*local, 5);
  copy_params(*local, plain);
  const MhaInputs in = make_inputs(c, dt, 3);
  MhaMasks mk = make_masks(c, 9);
  const std::int64_t off = c.mask == MaskKind::causal_bottom_right ? c.Lk - c.Lq : 0;
  nn::MhaOptions banded = mk.options;
  const GuardedTensor b = band(c.Lq, c.Lk, lc.window, off);
  banded.attn_mask = b.view;
  if (c.Lq != c.Lk && !mk.options.causal_alignment) mk.options.causal_alignment = Alignment::top_left;
  const nn::MhaOutput ol = local->forward(in.query, in.key, in.value, mk.options);
  const nn::MhaOutput op = plain.forward(in.query, in.key, in.value, banded);
  EXPECT_LE(max_abs_diff(ol.out.view(), op.out.view()), tol);
  GuardedTensor R = clone(ol.out.view(), Layout::bhsd, dt);
  fill_normal(R.view, 17);
  local->zero_grad();
  plain.zero_grad();
  const nn::MhaGrads gl = local->backward(R.view), gp = plain.backward(R.view);
  EXPECT_LE(max_abs_diff(gl.dquery.view(), gp.dquery.view()), tol);
  if (gp.dkey.view().defined()) {
    EXPECT_LE(max_abs_diff(gl.dkey.view(), gp.dkey.view()), tol);
  }
  const auto pl = local->parameters(), pp = plain.parameters();
  for (std::size_t i = 0; i < pl.size(); ++i) EXPECT_LE(max_abs_diff(pl[i].grad, pp[i].grad), tol) << pl[i].name;
}

TEST_P(MhaLocal, EqualsTheBandAsABoolMaskF64) { check_against_band<double>(GetParam(), 1e-12); }
TEST_P(MhaLocal, EqualsTheBandAsABoolMaskF32) { check_against_band<float>(GetParam(), 2e-5); }

INSTANTIATE_TEST_SUITE_P(Cases, MhaLocal, ::testing::ValuesIn(local_cases()), [](const auto& p) {
  return p.param.c.name() + "_w" + std::to_string(p.param.window);
});

TEST(MhaLocalUse, WindowZeroIsEachTokensOwnValue) {
  // Query i sees only key i: softmax of one score is 1, so out_i = W_o(W_v x_i + b_v) + b_o.
  nn::MhaConfig c;
  c.embed_dim = 12;
  c.num_heads = 3;
  c.batch_first = true;
  c.window = 0;
  nn::MultiheadAttention<double> m(c);
  randomize_biases(m, 2);
  GuardedTensor x = make_tensor(DType::f64, {2, 6, 12});
  fill_normal(x.view, 4);
  const Tensor out = m.forward(x.view, x.view, x.view).out;
  const TensorView wv = m.parameter("v_proj.weight").value, bv = m.parameter("v_proj.bias").value;
  const TensorView wo = m.parameter("out_proj.weight").value, bo = m.parameter("out_proj.bias").value;
  double err = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t l = 0; l < 6; ++l) {
      std::vector<double> v(12);
      for (std::int64_t o = 0; o < 12; ++o) {
        v[o] = at(bv, o);
        for (std::int64_t i = 0; i < 12; ++i) v[o] += at(wv, o, i) * at(x.view, b, l, i);
      }
      for (std::int64_t o = 0; o < 12; ++o) {
        double y = at(bo, o);
        for (std::int64_t i = 0; i < 12; ++i) y += at(wo, o, i) * v[i];
        err = std::max(err, std::abs(y - at(out.view(), b, l, o)));
      }
    }
  EXPECT_LE(err, 1e-12);
}

TEST(MhaLocalUse, CachedDecodingEqualsTheFullCausalForward) {
  nn::MhaConfig c;
  c.embed_dim = 32;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.batch_first = true;
  c.window = 3;
  nn::RotaryConfig r;
  c.rotary = r;
  const auto m = nn::make_attention<float>("local", c);
  m->set_training(false);
  const std::int64_t B = 2, L = 10;
  GuardedTensor x = make_tensor(DType::f32, {B, L, 32});
  fill_normal(x.view, 6);
  nn::MhaOptions o;
  o.is_causal = true;
  const Tensor full = m->forward(x.view, x.view, x.view, o).out;
  KvCache cache = m->make_cache(B, L);
  double err = 0;
  for (std::int64_t start = 0; start < L;) {
    const std::int64_t n = start == 0 ? 4 : 1;  // a 4-token prefill, then one token per step
    TensorView step = x.view;
    step.data = x.view.at(x.view.offset({0, start, 0}));
    step.shape[1] = n;
    const Tensor y = m->forward_cached(step, step, step, cache);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t l = 0; l < n; ++l)
        for (std::int64_t e = 0; e < 32; ++e)
          err = std::max(err, std::abs(at(y.view(), b, l, e) - at(full.view(), b, start + l, e)));
    start += n;
  }
  EXPECT_LE(err, 2e-5);
}

TEST(MhaLocalUse, EncoderLayerTakesLocalAttention) {
  nn::EncoderLayerConfig c;
  c.embed_dim = 16;
  c.num_heads = 2;
  c.attention = "local";
  c.window = 20;  // ≥ L: every key is within the window, so it must equal "mha"
  nn::TransformerEncoderLayer<double> local(c);
  c.attention = "mha";
  c.window = -1;
  nn::TransformerEncoderLayer<double> plain(c);
  copy_params(local, plain);
  GuardedTensor x = make_tensor(DType::f64, {2, 7, 16});
  fill_normal(x.view, 8);
  const double* a = local.forward(static_cast<const double*>(x.view.data), 2, 7, {});
  std::vector<double> ya(a, a + 2 * 7 * 16);
  const double* p = plain.forward(static_cast<const double*>(x.view.data), 2, 7, {});
  double err = 0;
  for (std::size_t i = 0; i < ya.size(); ++i) err = std::max(err, std::abs(ya[i] - p[i]));
  EXPECT_LE(err, 1e-12);
  nn::EncoderLayerConfig narrow = c;
  narrow.attention = "local";
  narrow.window = 1;
  nn::TransformerEncoderLayer<double> near(narrow);
  copy_params(plain, near);
  const double* n = near.forward(static_cast<const double*>(x.view.data), 2, 7, {});
  double diff = 0;
  for (std::size_t i = 0; i < ya.size(); ++i) diff = std::max(diff, std::abs(ya[i] - n[i]));
  EXPECT_GT(diff, 1e-3);  // a window of 1 must change the result
}

TEST(MhaLocalUse, Errors) {
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
  expect([&] { nn::make_attention("local", c); }, "config.window", "expected the window");
  nn::MhaConfig w = c;
  w.window = 2;
  expect([&] { nn::make_attention("mha", w); }, "config.window", "use type \"local\"");
  nn::MhaConfig bad = c;
  bad.window = -3;
  expect([&] { nn::MultiheadAttention<float> m(bad); }, "window", "expected ≥ 0");
  nn::MultiheadAttention<float> m(w);
  GuardedTensor q = make_tensor(DType::f32, {1, 3, 8}), kv = make_tensor(DType::f32, {1, 5, 8});
  fill_normal(q.view, 1);
  fill_normal(kv.view, 2);
  expect([&] { m.forward(q.view, kv.view, kv.view); }, "causal_alignment", "local");
  nn::EncoderLayerConfig d;
  d.embed_dim = 8;
  d.num_heads = 2;
  d.attention = "local";
  d.window = 2;
  expect([&] { nn::TransformerDecoderLayer<float> layer(d); }, "attention", "cross-attention");
}

}  // namespace
}  // namespace attn::test
