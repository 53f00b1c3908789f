// Bad input to MultiheadAttention and make_attention: one test per row of the error table, each
// checking that the attn::Error names the argument and says what was seen and expected.

#include <gtest/gtest.h>

#include <functional>

#include "attn/nn/make_attention.hpp"
#include "nn/mha_case.hpp"

namespace attn::test {
namespace {

void expect_error(const std::function<void()>& f, const std::string& argument, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no attn::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), argument) << e.what();
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "missing \"" << p << "\" in: " << e.what();
  }
}

nn::MhaConfig config(std::int64_t E, std::int64_t H, std::int64_t Hkv = 0, bool batch_first = true) {
  nn::MhaConfig c;
  c.embed_dim = E;
  c.num_heads = H;
  c.num_kv_heads = Hkv;
  c.batch_first = batch_first;
  return c;
}

GuardedTensor filled(DType dt, std::initializer_list<std::int64_t> shape) {
  GuardedTensor t = make_tensor(dt, shape);
  fill_normal(t.view, 1);
  return t;
}

TEST(MhaErrors, NumHeadsNotDividingEmbedDim) {
  expect_error([] { nn::MultiheadAttention<float> m(config(10, 4)); }, "num_heads",
               {"num_heads: = 4, expected a divisor of embed_dim = 10"});
}

TEST(MhaErrors, NumKvHeadsNotDividingNumHeads) {
  expect_error([] { nn::MultiheadAttention<float> m(config(12, 4, 3)); }, "num_kv_heads",
               {"num_kv_heads: = 3, expected a divisor of num_heads = 4"});
}

TEST(MhaErrors, BatchMismatch) {
  nn::MultiheadAttention<float> m(config(8, 2));
  const GuardedTensor q = filled(DType::f32, {2, 5, 8}), k = filled(DType::f32, {3, 6, 8});
  expect_error([&] { m.forward(q, k, k); }, "key", {"batch size 3", "[3, 6, 8]", "query has 2", "[2, 5, 8]"});
}

TEST(MhaErrors, EmbedDimMismatch) {
  nn::MhaConfig c = config(8, 2);
  c.kdim = 6;
  nn::MultiheadAttention<float> m(c);
  const GuardedTensor q = filled(DType::f32, {2, 5, 7}), k = filled(DType::f32, {2, 5, 6}),
                      v = filled(DType::f32, {2, 5, 8});
  expect_error([&] { m.forward(q, k, v); }, "query", {"last dim is 7", "embed_dim = 8"});
  const GuardedTensor q8 = filled(DType::f32, {2, 5, 8});
  expect_error([&] { m.forward(q8, q8, v); }, "key", {"last dim is 8", "kdim = 6"});
}

TEST(MhaErrors, KeyAndValueLengthsDiffer) {
  nn::MultiheadAttention<float> m(config(8, 2));
  const GuardedTensor q = filled(DType::f32, {2, 5, 8}), k = filled(DType::f32, {2, 6, 8}),
                      v = filled(DType::f32, {2, 7, 8});
  expect_error([&] { m.forward(q, k, v); }, "value", {"length 7", "key has 6", "same length"});
}

TEST(MhaErrors, MaskDoesNotBroadcast) {
  nn::MultiheadAttention<float> m(config(8, 2));
  const GuardedTensor x = filled(DType::f32, {2, 5, 8});
  GuardedTensor mask = make_tensor(DType::boolean, {3, 5, 5});
  fill_value(mask.view, 1.0);
  nn::MhaOptions o;
  o.attn_mask = mask.view;
  expect_error([&] { m.forward(x, x, x, o); }, "attn_mask", {"[3, 5, 5]", "[2, 2, 5, 5]", "[B, 1, Lq, Lk]"});
}

TEST(MhaErrors, SeqFirstTensorWhereBatchFirstConfigured) {
  nn::MultiheadAttention<float> m(config(8, 2));                                             // batch_first
  const GuardedTensor q = filled(DType::f32, {5, 2, 8}), k = filled(DType::f32, {7, 2, 8});  // (L, B, E)
  expect_error([&] { m.forward(q, k, k); }, "key", {"looks like (L, B, E) but batch_first = true"});
  nn::MhaOptions o;
  o.key_lengths = {5, 5};  // one per row of B = 2, but the tensor reads as B = 5
  expect_error([&] { m.forward(q, q, q, o); }, "key_lengths",
               {"expected one per batch row (B = 5)", "looks like (L, B, E)"});
  nn::MultiheadAttention<float> seq_first(config(8, 2, 0, false));
  const GuardedTensor qb = filled(DType::f32, {2, 5, 8}), kb = filled(DType::f32, {2, 7, 8});  // (B, L, E)
  expect_error([&] { seq_first.forward(qb, kb, kb); }, "key", {"looks like (B, L, E) but batch_first = false"});
}

TEST(MhaErrors, CacheOfWrongHeadCount) {
  nn::MultiheadAttention<float> m(config(16, 4, 2));
  KvCacheConfig kc;
  kc.batch = 2;
  kc.kv_heads = 4;
  kc.head_dim = 4;
  kc.capacity = 8;
  KvCache cache(kc);
  const GuardedTensor x = filled(DType::f32, {2, 1, 16});
  expect_error([&] { m.forward_cached(x, x, x, cache); }, "cache", {"kv_heads = 4", "num_kv_heads = 2"});
}

TEST(MhaErrors, CacheOfWrongHeadDim) {
  nn::MultiheadAttention<float> m(config(16, 4, 2));
  KvCacheConfig kc;
  kc.batch = 2;
  kc.kv_heads = 2;
  kc.head_dim = 8;
  kc.capacity = 8;
  KvCache cache(kc);
  const GuardedTensor x = filled(DType::f32, {2, 1, 16});
  expect_error([&] { m.forward_cached(x, x, x, cache); }, "cache", {"head_dim = 8", "module's head_dim = 4"});
}

TEST(MhaErrors, CacheOfWrongBatch) {
  nn::MultiheadAttention<float> m(config(16, 4, 2, false));
  KvCache cache = m.make_cache(2, 8);
  const GuardedTensor x = filled(DType::f32, {2, 1, 16});  // (B, L, E) = (2, 1, 16) given to a (L, B, E) module
  expect_error([&] { m.forward_cached(x, x, x, cache); }, "cache",
               {"batch = 2", "batch size 1", "looks like (B, L, E)"});
}

TEST(MhaErrors, CausalAlignmentMissingWhenLengthsDiffer) {
  nn::MultiheadAttention<float> m(config(8, 2));
  const GuardedTensor q = filled(DType::f32, {2, 3, 8}), k = filled(DType::f32, {2, 6, 8});
  nn::MhaOptions o;
  o.is_causal = true;
  expect_error([&] { m.forward(q, k, k, o); }, "causal_alignment", {"Lq = 3", "Lk = 6", "top_left", "bottom_right"});
}

TEST(MhaErrors, DtypeAndRank) {
  nn::MultiheadAttention<float> m(config(8, 2));
  const GuardedTensor d = filled(DType::f64, {2, 3, 8});
  expect_error([&] { m.forward(d, d, d); }, "query", {"dtype f64", "expected f32"});
  const GuardedTensor r4 = filled(DType::f32, {1, 2, 3, 8});
  expect_error([&] { m.forward(r4, r4, r4); }, "query", {"rank 4"});
  const GuardedTensor q2 = filled(DType::f32, {3, 8}), k3 = filled(DType::f32, {1, 3, 8});
  expect_error([&] { m.forward(q2, k3, k3); }, "key", {"batched and unbatched"});
}

TEST(MhaErrors, CachedPathsRefuseWhatTheyCannotDo) {
  nn::MhaConfig c = config(8, 2);
  c.rotary = nn::RotaryConfig{};
  nn::MultiheadAttention<float> m(c);
  const GuardedTensor x = filled(DType::f32, {2, 4, 8});
  expect_error([&] { m.project_kv(x); }, "memory", {"rotary"});
  KvCache cache = m.make_cache(2, 8);
  GuardedTensor mask = make_tensor(DType::boolean, {4, 4});
  fill_value(mask.view, 1.0);
  nn::MhaOptions o;
  o.attn_mask = mask.view;
  expect_error([&] { m.forward_cached(x, x, x, cache, o); }, "options", {"not supported with a KV cache"});
}

TEST(MakeAttention, UnknownTypeListsTheKnownOnes) {
  expect_error([] { nn::make_attention("flash", config(8, 2)); }, "type", {"\"flash\"", "mha, gqa, mqa"});
  expect_error([] { nn::make_attention("flash", config(8, 2)); }, "type", {"local, strided, linear"});
  expect_error([] { nn::make_attention("mha", config(8, 2, 1)); }, "config.num_kv_heads", {"use \"gqa\""});
  expect_error([] { nn::make_attention("gqa", config(8, 2)); }, "config.num_kv_heads", {"divisor"});
}

}  // namespace
}  // namespace attn::test
