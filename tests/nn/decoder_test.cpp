// nn::TransformerDecoderLayer, TransformerDecoder, Transformer (src/nn/decoder_layer.cpp,
// decoder.cpp): fp64 finite differences of every input (target and memory) and parameter of a
// decoder layer (pre-/post-norm, mha/gqa, RoPE in self-attention, target and memory padding,
// dropout) and of an encoder–decoder end to end; causality (a target position does not see later
// ones); errors.

#include <gtest/gtest.h>

#include "attn/error.hpp"
#include "attn/nn/decoder.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

nn::EncoderLayerConfig base() {
  nn::EncoderLayerConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  c.ffn_dim = 12;
  c.seed = 5;
  return c;
}

TEST(TransformerDecoderLayer, BackwardMatchesFiniteDifferences) {
  const std::int64_t B = 2, Lt = 4, Ls = 5, E = 8;
  struct Case {
    const char* name;
    nn::EncoderLayerConfig cfg;
    nn::DecoderCall call;
  };
  std::vector<Case> cases;
  cases.push_back({"pre_mha", base(), {}});
  nn::EncoderLayerConfig c = base();
  c.norm_first = false;
  c.attention = "gqa";
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.rotary = nn::RotaryConfig{};
  cases.push_back({"post_gqa_rope_padded", c, {{4, 3}, {5, 2}, true, 0}});
  c = base();
  c.norm = nn::NormKind::rms_norm;
  c.activation = nn::Activation::swiglu;
  c.dropout = 0.2;
  c.attn_dropout = 0.1;
  cases.push_back({"pre_rms_swiglu_dropout", c, {{}, {3, 5}, true, 7}});
  for (const Case& k : cases) {
    nn::TransformerDecoderLayer<double> layer(k.cfg, 1);
    randomize_params(layer, 13, 0.4);
    std::vector<double> x = randn(static_cast<std::size_t>(B * Lt * E), 1),
                        mem = randn(static_cast<std::size_t>(B * Ls * E), 2);
    const std::vector<double> R = randn(x.size(), 3);
    auto loss = [&] { return dot(R, layer.forward(x.data(), B, Lt, mem.data(), Ls, k.call)); };
    loss();
    layer.zero_grad();
    std::vector<double> dx(x.size()), dmem(mem.size(), 0.0);
    layer.backward(x.data(), R.data(), dx.data(), dmem.data());
    EXPECT_LE(fd_error(x.data(), dx.data(), static_cast<std::int64_t>(x.size()), loss), 1e-6) << k.name << ": dx";
    EXPECT_LE(fd_error(mem.data(), dmem.data(), static_cast<std::int64_t>(mem.size()), loss), 1e-6)
        << k.name << ": dmem";
    expect_param_grads(layer, loss, 1e-6, k.name);
  }
}

TEST(Transformer, EncoderDecoderEndToEndMatchesFiniteDifferences) {
  const std::int64_t B = 2, Ls = 5, Lt = 3, E = 8;
  nn::EncoderConfig ec;
  ec.layer = base();
  ec.num_layers = 2;
  nn::DecoderConfig dc;
  dc.layer = base();
  dc.layer.rotary = nn::RotaryConfig{};
  dc.num_layers = 2;
  nn::Transformer<double> model(ec, dc);
  randomize_params(model, 21, 0.4);
  std::vector<double> src = randn(static_cast<std::size_t>(B * Ls * E), 4),
                      tgt = randn(static_cast<std::size_t>(B * Lt * E), 5);
  const std::vector<double> R = randn(tgt.size(), 6);
  const std::vector<std::int64_t> src_len{5, 3};
  auto loss = [&] { return dot(R, model.forward(src.data(), Ls, tgt.data(), Lt, B, src_len)); };
  loss();
  model.zero_grad();
  std::vector<double> dsrc(src.size()), dtgt(tgt.size());
  model.backward(R.data(), dsrc.data(), dtgt.data());
  EXPECT_LE(fd_error(src.data(), dsrc.data(), static_cast<std::int64_t>(src.size()), loss), 1e-6) << "dsrc";
  EXPECT_LE(fd_error(tgt.data(), dtgt.data(), static_cast<std::int64_t>(tgt.size()), loss), 1e-6) << "dtgt";
  expect_param_grads(model, loss, 1e-6, "transformer");
  // src positions past their length do not matter.
  EXPECT_EQ(dsrc[static_cast<std::size_t>((1 * Ls + 4) * E)], 0.0);
  EXPECT_EQ(model.parameters().front().name, "encoder.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(model.parameters().back().name, "decoder.norm.bias");
}

TEST(TransformerDecoderLayer, IsCausal) {
  const std::int64_t B = 1, Lt = 6, Ls = 4, E = 8;
  nn::TransformerDecoderLayer<double> layer(base());
  std::vector<double> x = randn(static_cast<std::size_t>(Lt * E), 1), mem = randn(static_cast<std::size_t>(Ls * E), 2);
  const double* y = layer.forward(x.data(), B, Lt, mem.data(), Ls);
  const std::vector<double> before(y, y + Lt * E);
  for (std::int64_t e = 0; e < E; ++e) x[static_cast<std::size_t>(4 * E + e)] += 1.0;  // change position 4
  y = layer.forward(x.data(), B, Lt, mem.data(), Ls);
  for (std::int64_t i = 0; i < 4 * E; ++i) EXPECT_EQ(y[i], before[static_cast<std::size_t>(i)]) << i;
  bool changed = false;
  for (std::int64_t i = 4 * E; i < Lt * E; ++i) changed = changed || y[i] != before[static_cast<std::size_t>(i)];
  EXPECT_TRUE(changed);
}

TEST(TransformerDecoderLayer, Errors) {
  nn::EncoderLayerConfig c = base();
  c.attention = "mean";
  EXPECT_THROW(nn::TransformerDecoderLayer<float>{c}, Error);
  nn::EncoderConfig ec;
  ec.layer = base();
  nn::DecoderConfig dc;
  dc.layer = base();
  dc.layer.embed_dim = 16;
  EXPECT_THROW((nn::Transformer<float>{ec, dc}), Error);
  nn::TransformerDecoderLayer<float> l(base());
  std::vector<float> x(8), d(8);
  EXPECT_THROW(l.backward(x.data(), x.data(), d.data(), d.data()), Error);
}

}  // namespace
}  // namespace attn::test
