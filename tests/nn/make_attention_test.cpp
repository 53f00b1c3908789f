// nn::make_attention (src/nn/make_attention.cpp): the kinds, their head counts and their exact
// parameter counts — MHA 4E², GQA E²(2 + 2·Hkv/H), MQA E²(2 + 2/H) without biases.

#include <gtest/gtest.h>

#include "attn/nn/make_attention.hpp"

namespace attn::test {
namespace {

TEST(MakeAttention, KindsAndParameterCounts) {
  for (std::int64_t E : {64, 96}) {
    for (std::int64_t H : {8, 16}) {
      if (E % H) continue;
      nn::MhaConfig c;
      c.embed_dim = E;
      c.num_heads = H;
      c.bias = false;
      const auto mha = nn::make_attention("mha", c);
      EXPECT_EQ(mha->num_kv_heads(), H);
      EXPECT_EQ(mha->num_parameters(), 4 * E * E);
      const auto mqa = nn::make_attention("mqa", c);
      EXPECT_EQ(mqa->num_kv_heads(), 1);
      EXPECT_EQ(mqa->num_parameters() * H, E * E * (2 * H + 2));  // E²(2 + 2/H)
      c.num_kv_heads = 4;
      const auto gqa = nn::make_attention("gqa", c);
      EXPECT_EQ(gqa->num_kv_heads(), 4);
      EXPECT_EQ(gqa->num_parameters() * H, E * E * (2 * H + 2 * 4));  // E²(2 + 2·Hkv/H)
      c.bias = true;
      const auto gqa_bias = nn::make_attention<double>("gqa", c);
      const std::int64_t kv = 4 * (E / H);
      EXPECT_EQ(gqa_bias->num_parameters(), gqa->num_parameters() + 2 * E + 2 * kv);
    }
  }
  EXPECT_EQ(nn::attention_types(), (std::vector<std::string>{"mha", "gqa", "mqa", "local", "strided", "linear"}));
}

}  // namespace
}  // namespace attn::test
