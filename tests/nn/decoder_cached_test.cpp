// Cached decoding of nn::TransformerDecoder / TransformerDecoderLayer (src/nn/decoder_layer.cpp,
// decoder.cpp): the memory's K/V projected once (make_cache), then the target fed in steps of 1, 3,
// 1, 2, ... tokens (forward_step) gives the rows of the full causal forward of the whole sequence
// (eval mode) — pre-norm MHA with RoPE, post-norm GQA, RMSNorm + SwiGLU, memory padding; a step
// leaves no forward for backward; a wrong number of layer states is an error.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/decoder.hpp"
#include "nn/fd_util.hpp"

namespace attn::test {
namespace {

void randomize_f32(const nn::Module& m, std::uint64_t seed, double scale) {
  for (const nn::Parameter& p : m.parameters()) {
    const std::vector<double> v = randn(static_cast<std::size_t>(p.value.numel()), seed++, scale);
    std::copy(v.begin(), v.end(), static_cast<float*>(p.value.data));
  }
}

nn::EncoderLayerConfig layer_config() {
  nn::EncoderLayerConfig c;
  c.embed_dim = 32;
  c.num_heads = 4;
  c.ffn_dim = 48;
  c.seed = 9;
  return c;
}

TEST(DecoderCached, StepsEqualTheFullCausalForward) {
  const std::int64_t B = 2, Lt = 9, Ls = 7, E = 32;
  struct Case {
    const char* name;
    nn::EncoderLayerConfig cfg;
    std::vector<std::int64_t> memory_lengths;
  };
  std::vector<Case> cases;
  nn::EncoderLayerConfig c = layer_config();
  c.rotary = nn::RotaryConfig{};
  cases.push_back({"pre_mha_rope", c, {}});
  c = layer_config();
  c.norm_first = false;
  c.attention = "gqa";
  c.num_kv_heads = 2;
  cases.push_back({"post_gqa_padded_memory", c, {7, 4}});
  c = layer_config();
  c.norm = nn::NormKind::rms_norm;
  c.activation = nn::Activation::swiglu;
  c.attention = "mqa";
  c.rotary = nn::RotaryConfig{};
  c.dropout = 0.3;  // eval mode: no dropout in either path
  cases.push_back({"pre_rms_swiglu_mqa_rope", c, {3, 7}});
  for (const Case& k : cases) {
    nn::DecoderConfig dc;
    dc.layer = k.cfg;
    dc.num_layers = 2;
    nn::TransformerDecoder<float> dec(dc);
    randomize_f32(dec, 17, 0.3);
    dec.set_training(false);
    const std::vector<float> x = to_f32(randn(static_cast<std::size_t>(B * Lt * E), 1)),
                             mem = to_f32(randn(static_cast<std::size_t>(B * Ls * E), 2));
    nn::DecoderCall call;
    call.memory_lengths = k.memory_lengths;
    const float* yf = dec.forward(x.data(), B, Lt, mem.data(), Ls, call);
    const std::vector<float> full(yf, yf + B * Lt * E);

    std::vector<nn::DecoderLayerCache> caches = dec.make_cache(mem.data(), B, Ls, Lt, k.memory_lengths);
    std::int64_t t0 = 0;
    for (std::int64_t len : {1, 3, 1, 2, 2}) {
      std::vector<float> xs(static_cast<std::size_t>(B * len * E));
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < len * E; ++i)
          xs[static_cast<std::size_t>(b * len * E + i)] = x[static_cast<std::size_t>((b * Lt + t0) * E + i)];
      const float* ys = dec.forward_step(xs.data(), B, len, caches);
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < len * E; ++i) {
          const float want = full[static_cast<std::size_t>((b * Lt + t0) * E + i)];
          ASSERT_NEAR(ys[b * len * E + i], want, 2e-5 * (1 + std::abs(want)))
              << k.name << ": row " << b << ", token " << t0 + i / E << ", step of " << len;
        }
      t0 += len;
    }
    ASSERT_EQ(t0, Lt);
    EXPECT_EQ(caches[0].self.length(0), Lt) << k.name;
    // The step replaced what forward kept: backward needs a new forward.
    std::vector<float> dx(x.size()), dmem(mem.size(), 0.0f);
    EXPECT_THROW(dec.backward(x.data(), full.data(), dx.data(), dmem.data()), Error) << k.name;
  }
}

TEST(DecoderCached, Errors) {
  nn::DecoderConfig dc;
  dc.layer = layer_config();
  dc.num_layers = 2;
  nn::TransformerDecoder<float> dec(dc);
  std::vector<float> mem(static_cast<std::size_t>(3 * 32)), x(32);
  std::vector<nn::DecoderLayerCache> caches = dec.make_cache(mem.data(), 1, 3, 4);
  caches.pop_back();
  try {
    dec.forward_step(x.data(), 1, 1, caches);
    FAIL() << "one layer state for two layers";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "caches");
  }
  EXPECT_THROW(dec.make_cache(mem.data(), 1, 3, 0), Error);
}

}  // namespace
}  // namespace attn::test
