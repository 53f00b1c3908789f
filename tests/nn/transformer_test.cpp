// nn::TransformerEncoderLayer, TransformerEncoder, RegressionTransformer (src/nn/encoder_layer.cpp,
// encoder.cpp, regression.cpp, mean_mix.cpp): the layer against a composition of the separately
// tested modules written here, fp64 finite differences of every input and parameter of a layer
// (pre-/post-norm, LayerNorm/RMSNorm, every FFN activation, mha/gqa/mqa/mean, RoPE, padding,
// residual and attention dropout), of a two-layer stack and of the regression model end to end
// (mean and CLS pooling); checkpointing gives the same gradients bit for bit; f32 tracks f64;
// errors.

#include <gtest/gtest.h>

#include <cstring>

#include "attn/error.hpp"
#include "attn/nn/regression.hpp"
#include "attn/nn/transformer.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

using nn::Activation;
using nn::NormKind;

struct LayerCase {
  const char* name;
  nn::EncoderLayerConfig cfg;
  std::vector<std::int64_t> lengths;
};

std::vector<LayerCase> layer_cases() {
  std::vector<LayerCase> cs;
  auto base = [] {
    nn::EncoderLayerConfig c;
    c.embed_dim = 8;
    c.num_heads = 2;
    c.ffn_dim = 12;
    c.seed = 3;
    return c;
  };
  nn::EncoderLayerConfig c = base();
  cs.push_back({"pre_ln_gelu_mha", c, {}});
  c = base();
  c.norm_first = false;
  c.activation = Activation::relu;
  c.attention = "gqa";
  c.num_heads = 4;
  c.num_kv_heads = 2;
  cs.push_back({"post_ln_relu_gqa_padded", c, {5, 3}});
  c = base();
  c.norm = NormKind::rms_norm;
  c.activation = Activation::swiglu;
  c.attention = "mqa";
  c.bias = false;
  c.rotary = nn::RotaryConfig{};
  cs.push_back({"pre_rms_swiglu_mqa_rope", c, {4, 5}});
  c = base();
  c.activation = Activation::gelu_tanh;
  c.dropout = 0.2;
  c.attn_dropout = 0.15;
  cs.push_back({"pre_ln_gelu_tanh_dropout", c, {5, 2}});
  c = base();
  c.norm_first = false;
  c.dropout = 0.25;
  cs.push_back({"post_ln_dropout", c, {}});
  c = base();
  c.attention = "mean";
  cs.push_back({"pre_ln_mean_mix_padded", c, {2, 5}});
  return cs;
}

TEST(TransformerEncoderLayer, BackwardMatchesFiniteDifferences) {
  const std::int64_t B = 2, L = 5;
  for (const LayerCase& lc : layer_cases()) {
    nn::TransformerEncoderLayer<double> layer(lc.cfg, 1);
    randomize_params(layer, 9, 0.4);
    const std::int64_t n = B * L * lc.cfg.embed_dim;
    std::vector<double> x = randn(static_cast<std::size_t>(n), 4);
    const std::vector<double> R = randn(x.size(), 5);
    nn::EncoderCall call;
    call.key_lengths = lc.lengths;
    call.step = 11;
    auto loss = [&] { return dot(R, layer.forward(x.data(), B, L, call)); };
    loss();
    layer.zero_grad();
    std::vector<double> dx(x.size(), 0.0);
    layer.backward(x.data(), R.data(), dx.data());
    EXPECT_LE(fd_error(x.data(), dx.data(), n, loss), 1e-6) << lc.name << ": dx";
    expect_param_grads(layer, loss, 1e-6, lc.name);
  }
}

void copy_params(const nn::Module& from, const std::string& prefix, const nn::Module& to) {
  for (const nn::Parameter& p : to.parameters()) {
    const nn::Parameter q = from.parameter(prefix + p.name);
    std::memcpy(p.value.data, q.value.data, static_cast<std::size_t>(p.value.numel()) * sizeof(double));
  }
}

TEST(TransformerEncoderLayer, ForwardEqualsCompositionOfModules) {
  const std::int64_t B = 2, L = 6, E = 8;
  for (bool pre : {true, false}) {
    nn::EncoderLayerConfig c;
    c.embed_dim = E;
    c.num_heads = 2;
    c.ffn_dim = 16;
    c.norm_first = pre;
    nn::TransformerEncoderLayer<double> layer(c);
    randomize_params(layer, 2, 0.4);
    nn::MhaConfig mc;
    mc.embed_dim = E;
    mc.num_heads = 2;
    mc.batch_first = true;
    nn::MultiheadAttention<double> mha(mc);
    nn::FeedForward<double> ffn({E, 16, Activation::gelu, true, 0});
    nn::LayerNorm<double> n1(E), n2(E);
    copy_params(layer, "self_attn.", mha);
    copy_params(layer, "", ffn);
    copy_params(layer, "norm1.", n1);
    copy_params(layer, "norm2.", n2);
    const std::int64_t n = B * L * E;
    std::vector<double> x = randn(static_cast<std::size_t>(n), 1), a(x.size()), h(x.size()), f(x.size()), g(x.size()),
                        ref(x.size());
    nn::MhaOptions o;
    o.key_lengths = {6, 4};
    auto attn = [&](const std::vector<double>& in) {
      const TensorView v(const_cast<double*>(in.data()), DType::f64, {B, L, E});
      const Tensor out = mha.forward(v, v, v, o).out;
      return std::vector<double>(out.ptr<double>(), out.ptr<double>() + n);
    };
    if (pre) {  // y = h + ffn(n2(h)), h = x + attn(n1(x))
      n1.forward(x.data(), B * L, a.data());
      const std::vector<double> s = attn(a);
      for (std::int64_t i = 0; i < n; ++i) h[i] = x[i] + s[i];
      n2.forward(h.data(), B * L, f.data());
      ffn.forward(f.data(), B * L, g.data());
      for (std::int64_t i = 0; i < n; ++i) ref[i] = h[i] + g[i];
    } else {  // y = n2(h + ffn(h)), h = n1(x + attn(x))
      const std::vector<double> s = attn(x);
      for (std::int64_t i = 0; i < n; ++i) a[i] = x[i] + s[i];
      n1.forward(a.data(), B * L, h.data());
      ffn.forward(h.data(), B * L, g.data());
      for (std::int64_t i = 0; i < n; ++i) f[i] = h[i] + g[i];
      n2.forward(f.data(), B * L, ref.data());
    }
    nn::EncoderCall call;
    call.key_lengths = {6, 4};
    const double* y = layer.forward(x.data(), B, L, call);
    for (std::int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], ref[i], 1e-12) << (pre ? "pre" : "post") << " " << i;
  }
}

nn::RegressionConfig small_regression(nn::Pooling pooling) {
  nn::RegressionConfig rc;
  rc.vocab_size = 5;
  rc.num_features = 2;
  rc.max_len = 6;
  rc.type_vocab_size = 2;
  rc.encoder.num_layers = 2;
  rc.encoder.layer.embed_dim = 8;
  rc.encoder.layer.num_heads = 2;
  rc.encoder.layer.ffn_dim = 12;
  rc.encoder.layer.dropout = 0.1;
  rc.pooling = pooling;
  rc.out_dim = 2;
  rc.seed = 4;
  return rc;
}

template <class T>
struct Batch {
  std::vector<std::int64_t> ids, types;
  std::vector<T> feats;
  nn::RegressionBatch<T> view(std::int64_t B, std::int64_t L) {
    nn::RegressionBatch<T> b;
    b.B = B;
    b.L = L;
    b.ids = ids.data();
    b.type_ids = types.data();
    b.features = feats.data();
    b.lengths = {L, L - 2};
    b.step = 3;
    return b;
  }
};

template <class T>
Batch<T> make_batch(std::int64_t M) {
  Batch<T> b;
  for (std::int64_t m = 0; m < M; ++m) {
    b.ids.push_back((m * 7 + 3) % 5);
    b.types.push_back(m % 3 == 0);
  }
  const std::vector<double> f = randn(static_cast<std::size_t>(2 * M), 8);
  b.feats.assign(f.begin(), f.end());
  return b;
}

TEST(RegressionTransformer, EndToEndBackwardMatchesFiniteDifferences) {
  const std::int64_t B = 2, L = 6;
  for (nn::Pooling pooling : {nn::Pooling::mean, nn::Pooling::cls}) {
    nn::RegressionTransformer<double> model(small_regression(pooling));
    randomize_params(model, 3, 0.4);
    Batch<double> data = make_batch<double>(B * L);
    const nn::RegressionBatch<double> batch = data.view(B, L);
    const std::vector<double> R = randn(static_cast<std::size_t>(B * 2), 6);
    auto loss = [&] { return dot(R, model.forward(batch)); };
    loss();
    model.zero_grad();
    model.backward(R.data());
    expect_param_grads(model, loss, 1e-6, nn::pooling_name(pooling));
    EXPECT_EQ(model.parameters().front().name, "embeddings.token.weight");
    EXPECT_EQ(model.parameters().back().name, "head.bias");
  }
}

TEST(TransformerEncoder, CheckpointingGivesTheSameGradientsBitForBit) {
  nn::RegressionConfig rc = small_regression(nn::Pooling::mean);
  rc.encoder.layer.embed_dim = 32;
  rc.encoder.layer.num_heads = 4;
  rc.encoder.layer.ffn_dim = 64;
  rc.encoder.layer.attn_dropout = 0.1;
  rc.encoder.num_layers = 3;
  rc.max_len = 24;
  const std::int64_t B = 3, L = 24;
  std::vector<float> grads[2];
  std::int64_t saved[2];
  for (int ck = 0; ck < 2; ++ck) {
    nn::RegressionTransformer<float> model(rc);
    model.set_checkpoint(ck == 1);
    Batch<float> data = make_batch<float>(B * L);
    nn::RegressionBatch<float> batch = data.view(B, L);
    batch.lengths = {24, 17, 9};
    const float* pred = model.forward(batch);
    saved[ck] = model.saved_bytes();
    std::vector<float> dpred(pred, pred + B * 2);
    model.backward(dpred.data());
    for (const nn::Parameter& p : model.parameters())
      grads[ck].insert(grads[ck].end(), static_cast<float*>(p.grad.data),
                       static_cast<float*>(p.grad.data) + p.grad.numel());
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)), 0);
  EXPECT_LT(saved[1] * 3, saved[0]) << saved[1] << " vs " << saved[0];
}

TEST(RegressionTransformer, F32TracksF64) {
  const std::int64_t B = 2, L = 6;
  nn::RegressionConfig rc = small_regression(nn::Pooling::mean);
  rc.encoder.layer.dropout = 0;
  nn::RegressionTransformer<double> m64(rc);
  nn::RegressionTransformer<float> m32(rc);
  const auto p64 = m64.parameters(), p32 = m32.parameters();
  ASSERT_EQ(p64.size(), p32.size());
  for (std::size_t i = 0; i < p64.size(); ++i)
    for (std::int64_t e = 0; e < p64[i].value.numel(); ++e)
      static_cast<double*>(p64[i].value.data)[e] = static_cast<float*>(p32[i].value.data)[e];
  Batch<double> d64 = make_batch<double>(B * L);
  Batch<float> d32 = make_batch<float>(B * L);
  for (std::size_t i = 0; i < d64.feats.size(); ++i) d64.feats[i] = d32.feats[i];
  const double* y64 = m64.forward(d64.view(B, L));
  const float* y32 = m32.forward(d32.view(B, L));
  for (std::int64_t i = 0; i < B * 2; ++i) EXPECT_NEAR(y32[i], y64[i], 1e-5);
  const std::vector<double> R = randn(static_cast<std::size_t>(B * 2), 1);
  const std::vector<float> Rf = to_f32(R);
  m64.backward(R.data());
  m32.backward(Rf.data());
  for (std::size_t i = 0; i < p64.size(); ++i) {
    double worst = 0, scale = 0;
    for (std::int64_t e = 0; e < p64[i].grad.numel(); ++e) {
      const double g = static_cast<double*>(p64[i].grad.data)[e];
      worst = std::max(worst, std::abs(static_cast<float*>(p32[i].grad.data)[e] - g));
      scale = std::max(scale, std::abs(g));
    }
    EXPECT_LE(worst, 1e-4 * (1 + scale)) << p64[i].name;
  }
}

TEST(TransformerEncoderLayer, Errors) {
  nn::EncoderLayerConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  c.attention = "flash";
  try {
    nn::TransformerEncoderLayer<float> l(c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "attention");
    EXPECT_NE(std::string(e.what()).find("mha, gqa, mqa, local, strided, linear, mean"), std::string::npos) << e.what();
  }
  c.attention = "mean";
  c.rotary = nn::RotaryConfig{};
  EXPECT_THROW(nn::TransformerEncoderLayer<float>{c}, Error);
  c.rotary.reset();
  c.num_heads = 3;
  c.attention = "mha";
  EXPECT_THROW(nn::TransformerEncoderLayer<float>{c}, Error);  // 3 does not divide 8
  c.num_heads = 2;
  nn::TransformerEncoderLayer<float> l(c);
  std::vector<float> x(2 * 3 * 8, 0.5f);
  nn::EncoderCall call;
  call.key_lengths = {3};
  EXPECT_THROW(l.forward(x.data(), 2, 3, call), Error);
  call.key_lengths = {3, 4};
  EXPECT_THROW(l.forward(x.data(), 2, 3, call), Error);
  std::vector<float> dx(x.size());
  EXPECT_THROW(l.backward(x.data(), x.data(), dx.data()), Error);  // before forward
  nn::RegressionConfig rc;
  rc.encoder.layer = c;
  EXPECT_THROW(nn::RegressionTransformer<float>{rc}, Error);  // no inputs
  EXPECT_THROW(nn::parse_pooling("max"), Error);
}

}  // namespace
}  // namespace attn::test
