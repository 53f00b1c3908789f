// Linear MultiheadAttention (MhaConfig::linear, make_attention("linear")): the f64 module against a
// composition written here (naive projection GEMMs, the feature maps and out_i = Σ_j a_ij v_j /
// (Σ_j a_ij + eps), a_ij = φ(q_i)·φ(k_j), over the visible keys, by plain loops), elu and FAVOR+,
// causal and not, key lengths, GQA, Lq ≠ Lk; its backward against fp64 central finite
// differences (input and every parameter); the f32 module against the f64 one; the encoder
// layer's "linear" option; errors.

#include <gtest/gtest.h>

#include <cmath>

#include "attn/nn/decoder.hpp"
#include "attn/nn/make_attention.hpp"
#include "attn/nn/transformer.hpp"
#include "nn/fd_util.hpp"
#include "nn/nn_test_util.hpp"

namespace attn::test {
namespace {

struct LinearCase {
  std::int64_t Hkv = 4, Lq = 7, Lk = 7;
  FeatureMap map = FeatureMap::elu;
  bool causal = false, lengths = false;
  std::string name() const {
    return std::string(map == FeatureMap::elu ? "elu" : "favor") + "_Hkv" + std::to_string(Hkv) + "_Lq" +
           std::to_string(Lq) + "_Lk" + std::to_string(Lk) + (causal ? "_causal" : "") + (lengths ? "_lengths" : "");
  }
};

constexpr std::int64_t kE = 16, kH = 4, kB = 2, kHd = kE / kH;

nn::MhaConfig config_of(const LinearCase& c) {
  nn::MhaConfig m;
  m.embed_dim = kE;
  m.num_heads = kH;
  m.num_kv_heads = c.Hkv;
  m.batch_first = true;
  m.feature_map = c.map;
  m.num_features = c.map == FeatureMap::favor ? 24 : 0;
  m.seed = 3;
  return m;
}

// φ(x) of one head row x [hd] (elu + 1, or FAVOR+ with ω [m, hd]: exp(c·ωx − c²‖x‖²/2)/√m, c = hd^−¼).
std::vector<double> phi(const std::vector<double>& x, FeatureMap map, const TensorView& omega) {
  if (map == FeatureMap::elu) {
    std::vector<double> r(x.size());
    for (std::size_t d = 0; d < x.size(); ++d) r[d] = x[d] > 0 ? x[d] + 1 : std::exp(x[d]);
    return r;
  }
  const std::int64_t m = omega.shape[0];
  const double c = std::pow(static_cast<double>(x.size()), -0.25);
  double sq = 0;
  for (double v : x) sq += v * v;
  std::vector<double> r(static_cast<std::size_t>(m));
  for (std::int64_t l = 0; l < m; ++l) {
    double u = 0;
    for (std::size_t d = 0; d < x.size(); ++d) u += at(omega, l, static_cast<std::int64_t>(d)) * x[d];
    r[static_cast<std::size_t>(l)] = std::exp(c * u - c * c * sq / 2) / std::sqrt(static_cast<double>(m));
  }
  return r;
}

// The composition: out [B, Lq, E]; query i sees keys j < len_b (and j ≤ i + Lk − Lq when causal,
// bottom-right aligned).
Seq composition(const nn::MultiheadAttention<double>& m, const Seq& xq, const Seq& xkv, const LinearCase& c,
                const std::vector<std::int64_t>& lengths) {
  auto w = [&](const char* n) { return m.parameter(n).value; };
  const Seq q = naive_linear(xq, w("q_proj.weight"), w("q_proj.bias"));
  const Seq k = naive_linear(xkv, w("k_proj.weight"), w("k_proj.bias"));
  const Seq v = naive_linear(xkv, w("v_proj.weight"), w("v_proj.bias"));
  Seq ctx(kB, c.Lq, kE);
  const std::int64_t G = kH / c.Hkv;
  auto row = [&](const Seq& s, std::int64_t b, std::int64_t l, std::int64_t h) {
    std::vector<double> r(kHd);
    for (std::int64_t d = 0; d < kHd; ++d) r[static_cast<std::size_t>(d)] = s.at(b, l, h * kHd + d);
    return r;
  };
  for (std::int64_t b = 0; b < kB; ++b)
    for (std::int64_t h = 0; h < kH; ++h)
      for (std::int64_t i = 0; i < c.Lq; ++i) {
        const std::vector<double> pq = phi(row(q, b, i, h), c.map, m.feature_projection());
        std::vector<double> num(kHd, 0.0);
        double den = m.config().linear_eps;
        for (std::int64_t j = 0; j < c.Lk; ++j) {
          if (!lengths.empty() && j >= lengths[static_cast<std::size_t>(b)]) continue;
          if (c.causal && j > i + c.Lk - c.Lq) continue;
          const std::vector<double> pk = phi(row(k, b, j, h / G), c.map, m.feature_projection());
          double a = 0;
          for (std::size_t f = 0; f < pq.size(); ++f) a += pq[f] * pk[f];
          den += a;
          for (std::int64_t d = 0; d < kHd; ++d) num[static_cast<std::size_t>(d)] += a * v.at(b, j, h / G * kHd + d);
        }
        for (std::int64_t d = 0; d < kHd; ++d) ctx.at(b, i, h * kHd + d) = num[static_cast<std::size_t>(d)] / den;
      }
  return naive_linear(ctx, w("out_proj.weight"), w("out_proj.bias"));
}

class MhaLinear : public ::testing::TestWithParam<LinearCase> {};

TEST_P(MhaLinear, ForwardEqualsCompositionAndBackwardEqualsFiniteDifferences) {
  const LinearCase c = GetParam();
  const auto m = nn::make_attention<double>("linear", config_of(c));
  randomize_params(*m, 11, 0.3);
  const bool self = c.Lq == c.Lk;
  const Seq sq = random_seq(kB, c.Lq, kE, 1), skv = self ? sq : random_seq(kB, c.Lk, kE, 2);
  GuardedTensor xq = to_module(sq, SeqLayout::batch_first, DType::f64);
  GuardedTensor xkv = self ? GuardedTensor{} : to_module(skv, SeqLayout::batch_first, DType::f64);
  const TensorView kv = self ? xq.view : xkv.view;
  nn::MhaOptions o;
  o.is_causal = c.causal;
  if (c.causal && !self) o.causal_alignment = Alignment::bottom_right;
  if (c.lengths) o.key_lengths = {c.Lk, c.Lk - 3};
  const Tensor out = m->forward(xq.view, kv, kv, o).out;
  const Seq ref = composition(*m, sq, skv, c, o.key_lengths);
  EXPECT_LE(max_abs_diff(from_module(out.view(), SeqLayout::batch_first), ref), 1e-12);

  const std::vector<double> R = randn(static_cast<std::size_t>(out.numel()), 5);
  const TensorView Rv(const_cast<double*>(R.data()), DType::f64, {kB, c.Lq, kE});
  m->zero_grad();
  const nn::MhaGrads g = m->backward(Rv);
  auto loss = [&] {
    const Tensor y = m->forward(xq.view, kv, kv, o).out;
    return dot(R, y.ptr<double>());
  };
  expect_param_grads(*m, loss, 1e-6, c.name());
  EXPECT_LE(fd_error(static_cast<double*>(xq.view.data), g.dquery.ptr<double>(), xq.view.numel(), loss), 1e-6);
  if (!self) {
    EXPECT_LE(fd_error(static_cast<double*>(xkv.view.data), g.dkey.ptr<double>(), xkv.view.numel(), loss), 1e-6);
  }

  // The f32 module (the cpu path) with the same weights.
  nn::MhaConfig c32 = config_of(c);
  const auto m32 = nn::make_attention<float>("linear", c32);
  const auto p64 = m->parameters(), p32 = m32->parameters();
  for (std::size_t i = 0; i < p64.size(); ++i)
    for_each_element(p64[i].value, [&](const auto&, std::int64_t off) { store_f64(p32[i].value, off, load_f64(p64[i].value, off)); });
  const GuardedTensor xq32 = to_module(sq, SeqLayout::batch_first, DType::f32);
  const GuardedTensor xkv32 = to_module(skv, SeqLayout::batch_first, DType::f32);
  const TensorView kv32 = self ? xq32.view : xkv32.view;
  const Tensor out32 = m32->forward(xq32.view, kv32, kv32, o).out;
  EXPECT_LE(max_abs_diff(from_module(out32.view(), SeqLayout::batch_first), ref), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Cases, MhaLinear,
                         ::testing::Values(LinearCase{}, LinearCase{2, 7, 7, FeatureMap::elu, true, true},
                                           LinearCase{1, 5, 9, FeatureMap::elu, true, false},
                                           LinearCase{4, 6, 6, FeatureMap::favor, false, true},
                                           LinearCase{2, 4, 8, FeatureMap::favor, true, false}),
                         [](const auto& p) { return p.param.name(); });

TEST(MhaLinearUse, EncoderLayerAndErrors) {
  nn::EncoderLayerConfig c;
  c.embed_dim = 16;
  c.num_heads = 2;
  c.attention = "linear";
  nn::TransformerEncoderLayer<float> layer(c);
  ASSERT_NE(layer.attention(), nullptr);
  EXPECT_TRUE(layer.attention()->config().linear);
  GuardedTensor x = make_tensor(DType::f32, {2, 7, 16});
  fill_normal(x.view, 8);
  nn::EncoderCall call;
  call.key_lengths = {7, 4};
  const float* y = layer.forward(static_cast<const float*>(x.view.data), 2, 7, call);
  for (std::int64_t i = 0; i < 2 * 7 * 16; ++i) ASSERT_TRUE(std::isfinite(y[i]));

  auto expect = [](auto&& f, const char* argument, const char* text) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  nn::MhaConfig m;
  m.embed_dim = 8;
  m.num_heads = 2;
  m.batch_first = true;
  nn::MhaConfig bad = m;
  bad.dropout = 0.1;
  expect([&] { nn::make_attention("linear", bad); }, "dropout", "linear");
  bad = m;
  bad.window = 2;
  expect([&] { nn::make_attention("linear", bad); }, "linear", "window");
  bad = m;
  bad.num_features = 5;
  expect([&] { nn::make_attention("linear", bad); }, "num_features", "elu");
  bad = m;
  bad.linear = true;
  expect([&] { nn::make_attention("mha", bad); }, "config.linear", "use type \"linear\"");
  const auto lin = nn::make_attention<float>("linear", m);
  GuardedTensor q = make_tensor(DType::f32, {1, 5, 8}), mask = make_tensor(DType::boolean, {5, 5});
  fill_normal(q.view, 1);
  fill_value(mask.view, 1.0);
  nn::MhaOptions o;
  o.attn_mask = mask.view;
  expect([&] { lin->forward(q.view, q.view, q.view, o); }, "attn_mask", "linear");
  nn::MhaOptions w;
  w.need_weights = true;
  expect([&] { lin->forward(q.view, q.view, q.view, w); }, "need_weights", "linear");
  KvCache cache = lin->make_cache(1, 8);
  expect([&] { lin->forward_cached(q.view, q.view, q.view, cache); }, "cache", "linear");
  nn::EncoderLayerConfig d;
  d.embed_dim = 8;
  d.num_heads = 2;
  d.attention = "linear";
  expect([&] { nn::TransformerDecoderLayer<float> dl(d); }, "attention", "linear");
}

}  // namespace
}  // namespace attn::test
