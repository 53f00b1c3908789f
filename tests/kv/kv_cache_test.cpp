// KvCache semantics: append (all rows, some rows, ragged counts), read-back per dtype, trim,
// reset, page accounting and reuse, capacity and pool errors, growth, bad configs and shapes.

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "attn/error.hpp"

#include "kv/kv_test_util.hpp"

namespace attn::test {
namespace {

struct Kv {
  GuardedTensor k, v;
};
Kv random_kv(std::int64_t B, std::int64_t H, std::int64_t N, std::int64_t D, std::int64_t Dv, std::uint64_t seed = 1) {
  Kv r{make_tensor4(DType::f32, B, H, N, D), make_tensor4(DType::f32, B, H, N, Dv)};
  fill_normal(r.k, seed);
  fill_normal(r.v, seed + 1);
  return r;
}

class CacheLayouts : public ::testing::TestWithParam<KvLayout> {};

TEST_P(CacheLayouts, AppendRaggedAndReadBack) {
  for (DType dtype : {DType::f32, DType::bf16, DType::i8}) {
    SCOPED_TRACE(dtype_name(dtype));
    KvCache cache({3, 2, 20, 12, 100, dtype, GetParam(), 16});
    const Kv a = random_kv(3, 2, 40, 20, 12);
    cache.append(a.k, a.v, {}, {5, 0, 40});
    EXPECT_EQ(cache.lengths(), (std::vector<std::int64_t>{5, 0, 40}));
    const Kv b = random_kv(2, 2, 7, 20, 12, 5);
    cache.append(b.k, b.v, {1, 0}, {7, 3});  // entry 0 → row 1, entry 1 → row 0
    EXPECT_EQ(cache.lengths(), (std::vector<std::int64_t>{8, 7, 40}));
    auto expect_value = [&](double want, float got, float scale) {
      if (dtype == DType::f32) EXPECT_EQ(got, static_cast<float>(want));
      else if (dtype == DType::bf16) EXPECT_EQ(got, bf16_to_f32(f32_to_bf16(static_cast<float>(want))));
      else EXPECT_LE(std::abs(got - want), scale / 2 * (1 + 1e-6));
    };
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t d = 0; d < 20; ++d) {
        expect_value(at(a.k, 0, h, 4, d), cache.element(0, 0, h, 4, d), cache.scale(0, 0, h, 4));
        expect_value(at(b.k, 1, h, 2, d), cache.element(0, 0, h, 7, d), cache.scale(0, 0, h, 7));
        expect_value(at(b.k, 0, h, 6, d), cache.element(0, 1, h, 6, d), cache.scale(0, 1, h, 6));
        expect_value(at(a.k, 2, h, 39, d), cache.element(0, 2, h, 39, d), cache.scale(0, 2, h, 39));
      }
    for (std::int64_t d = 0; d < 12; ++d)
      expect_value(at(a.v, 2, 1, 17, d), cache.element(1, 2, 1, 17, d), cache.scale(1, 2, 1, 17));
    expect_error([&] { (void)cache.element(0, 1, 0, 7, 0); }, "index", "outside the cached tokens");
  }
}

TEST_P(CacheLayouts, TrimResetAndPageReuse) {
  const bool paged = GetParam() == KvLayout::paged;
  KvCache cache({2, 2, 8, 8, 64, DType::f32, GetParam(), 16});
  const std::int64_t total = paged ? 2 * 4 : 0;
  EXPECT_EQ(cache.pages_total(), total);
  EXPECT_EQ(cache.pages_free(), total);
  const Kv a = random_kv(2, 2, 50, 8, 8);
  cache.append(a.k, a.v, {}, {50, 17});
  const std::vector<std::int32_t> table0 = cache.block_table(0);
  if (paged) {
    EXPECT_EQ(table0.size(), 4u);
    EXPECT_EQ(cache.block_table(1).size(), 2u);
    EXPECT_EQ(cache.pages_free(), 2);
  }
  cache.trim(0, 20);  // 20 tokens need 2 pages
  EXPECT_EQ(cache.length(0), 20);
  EXPECT_EQ(cache.element(0, 0, 1, 19, 3), static_cast<float>(at(a.k, 0, 1, 19, 3)));
  if (paged) {
    EXPECT_EQ(cache.pages_free(), 4);
  }
  expect_error([&] { cache.trim(0, 21); }, "length", "len_0 = 20");
  cache.append(batch_row(a.k, 1, 0, 20), batch_row(a.v, 1, 0, 20), {1});  // row 1: 17 → 37 tokens, one new page
  if (paged) {
    EXPECT_EQ(cache.block_table(1).back(), table0[2]);  // the page freed last is reused first
    EXPECT_EQ(cache.pages_free(), 3);
  }
  EXPECT_EQ(cache.element(1, 1, 0, 36, 2), static_cast<float>(at(a.v, 1, 0, 19, 2)));
  cache.reset(1);
  EXPECT_EQ(cache.length(1), 0);
  cache.reset();
  EXPECT_EQ(cache.lengths(), (std::vector<std::int64_t>{0, 0}));
  EXPECT_EQ(cache.pages_free(), total);
  cache.append(a.k, a.v, {}, {50, 17});  // the pool is reused: no page is added
  EXPECT_EQ(cache.pages_total(), total);
  EXPECT_EQ(cache.element(0, 0, 1, 49, 7), static_cast<float>(at(a.k, 0, 1, 49, 7)));
}

TEST_P(CacheLayouts, CapacityErrorsWriteNothing) {
  KvCache cache({2, 2, 8, 8, 32, DType::bf16, GetParam(), 16});
  const Kv a = random_kv(2, 2, 30, 8, 8);
  cache.append(a.k, a.v);
  expect_error([&] { cache.append(a.k, a.v, {}, {2, 3}); }, "k", "exceeds the capacity 32");
  EXPECT_EQ(cache.lengths(), (std::vector<std::int64_t>{30, 30}));
  cache.append(a.k, a.v, {}, {2, 0});
  EXPECT_EQ(cache.lengths(), (std::vector<std::int64_t>{32, 30}));
}

TEST_P(CacheLayouts, GrowableKeepsTokens) {
  KvCache cache({2, 2, 8, 4, 16, DType::i8, GetParam(), 16, 0, true});
  const Kv a = random_kv(2, 2, 40, 8, 4);
  cache.append(a.k, a.v, {}, {10, 3});
  const float before = cache.element(0, 0, 1, 9, 5);
  cache.append(a.k, a.v, {}, {40, 40});
  EXPECT_GE(cache.capacity(), 50);
  EXPECT_EQ(cache.lengths(), (std::vector<std::int64_t>{50, 43}));
  EXPECT_EQ(cache.element(0, 0, 1, 9, 5), before);
  EXPECT_LE(std::abs(cache.element(1, 1, 0, 42, 2) - at(a.v, 1, 0, 39, 2)), cache.scale(1, 1, 0, 42) / 2 * (1 + 1e-6));
}

TEST_P(CacheLayouts, MismatchedShapesNameTheArgument) {
  KvCache cache({2, 2, 8, 4, 16, DType::f32, GetParam(), 16});
  const Kv ok = random_kv(2, 2, 3, 8, 4);
  const Kv heads = random_kv(2, 3, 3, 8, 4), dim = random_kv(2, 2, 3, 6, 4), vdim = random_kv(2, 2, 3, 8, 5);
  const Kv batch = random_kv(3, 2, 3, 8, 4);
  expect_error([&] { cache.append(heads.k, heads.v); }, "k.shape[1]", "2 kv heads");
  expect_error([&] { cache.append(dim.k, dim.v); }, "k.shape[3]", "head_dim 8");
  expect_error([&] { cache.append(vdim.k, vdim.v); }, "v.shape[3]", "v_head_dim 4");
  expect_error([&] { cache.append(batch.k, batch.v); }, "k.shape[0]", "batch 2");
  expect_error([&] { cache.append(ok.k, ok.v, {0, 0}); }, "rows", "twice");
  expect_error([&] { cache.append(ok.k, ok.v, {0, 2}); }, "rows", "not a batch row");
  expect_error([&] { cache.append(ok.k, ok.v, {}, {4, 1}); }, "counts", "N = 3");
  expect_error([&] { cache.append(ok.k, dim.k); }, "v.shape[3]", "v_head_dim 4");
  EXPECT_EQ(cache.lengths(), (std::vector<std::int64_t>{0, 0}));
}

INSTANTIATE_TEST_SUITE_P(Layout, CacheLayouts, ::testing::Values(KvLayout::contiguous, KvLayout::paged),
                         [](const auto& param_info) { return std::string(kv_layout_name(param_info.param)); });

TEST(KvCache, PagedPoolSharedAndExhausted) {
  KvCache cache({3, 1, 4, 4, 64, DType::f32, KvLayout::paged, 16, /*num_pages=*/5});
  const Kv a = random_kv(3, 1, 40, 4, 4);
  const TensorView k1 = batch_row(a.k, 0, 0, 40), v1 = batch_row(a.v, 0, 0, 40);
  TensorView k2 = k1, v2 = v1;
  k2.shape[0] = v2.shape[0] = 2;
  cache.append(k1, v1, {0}, {40});  // 3 pages
  expect_error([&] { cache.append(k2, v2, {1, 2}, {17, 1}); }, "k", "page pool is exhausted");
  EXPECT_EQ(cache.pages_free(), 2);
  cache.append(k2, v2, {1, 2}, {16, 1});  // 1 + 1 pages
  EXPECT_EQ(cache.pages_free(), 0);
  cache.trim(0, 16);
  EXPECT_EQ(cache.pages_free(), 2);
  cache.append(k1, v1, {1}, {20});
  EXPECT_EQ(cache.length(1), 36);
}

TEST(KvCache, BadConfigs) {
  expect_error([] { KvCache({1, 1, 8, 8, 16, DType::f16}); }, "config.dtype", "f16");
  expect_error([] { KvCache({1, 1, 8, 8, 16, DType::f32, KvLayout::paged, 48}); }, "config.page_size", "power of two");
  expect_error([] { KvCache({1, 1, 8, 8, 16, DType::f32, KvLayout::paged, 8}); }, "config.page_size", "≥ 16");
  expect_error([] { KvCache({1, 0, 8, 8, 16}); }, "config.kv_heads", "= 0, expected >= 1");
  expect_error([] { KvCache({1, 1, 0, 8, 16}); }, "config.head_dim", "= 0, expected >= 1");
}

}  // namespace
}  // namespace attn::test
