// TensorView (offset, permute, byte_span, is_contiguous) and Tensor (64-byte alignment, guard bands).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "attn/error.hpp"
#include "attn/tensor.hpp"

namespace {

TEST(CoreTensorView, ContiguousStridesAndOffset) {
  float buf[1];
  const attn::TensorView t(buf, attn::DType::f32, {2, 3, 4, 5});
  EXPECT_EQ(t.rank, 4);
  EXPECT_EQ(t.numel(), 120);
  EXPECT_EQ(t.stride(0), 60);
  EXPECT_EQ(t.stride(1), 20);
  EXPECT_EQ(t.stride(2), 5);
  EXPECT_EQ(t.stride(3), 1);
  EXPECT_EQ(t.offset({1, 2, 3, 4}), 60 + 40 + 15 + 4);
  EXPECT_EQ(t.offset({1}), 60);  // missing trailing indices are 0
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.shape_string(), "[2, 3, 4, 5]");
  EXPECT_EQ(static_cast<char*>(t.at(3)) - reinterpret_cast<char*>(buf), 12);
}

TEST(CoreTensorView, PermuteBshdToBhsd) {
  // BSHD memory [B=2, N=3, H=4, D=5] seen as the logical [B, H, N, D].
  float buf[1];
  const attn::TensorView bshd(buf, attn::DType::f32, {2, 3, 4, 5});
  const attn::TensorView bhsd = bshd.permute({0, 2, 1, 3});
  EXPECT_EQ(bhsd.shape_string(), "[2, 4, 3, 5]");
  EXPECT_EQ(bhsd.stride(0), 60);
  EXPECT_EQ(bhsd.stride(1), 5);
  EXPECT_EQ(bhsd.stride(2), 20);
  EXPECT_EQ(bhsd.stride(3), 1);
  EXPECT_FALSE(bhsd.is_contiguous());
  EXPECT_EQ(bhsd.offset({1, 2, 1, 3}), bshd.offset({1, 1, 2, 3}));
  EXPECT_TRUE(bhsd.permute({0, 2, 1, 3}).is_contiguous());
  EXPECT_THROW(bshd.permute({0, 1, 2}), attn::Error);
  EXPECT_THROW(bshd.permute({0, 1, 2, 4}), attn::Error);
}

TEST(CoreTensorView, IsContiguousIgnoresSizeOneAxes) {
  float buf[1];
  EXPECT_TRUE(attn::TensorView(buf, attn::DType::f32, {1, 3, 1, 4}, {999, 4, 7, 1}).is_contiguous());
  EXPECT_FALSE(attn::TensorView(buf, attn::DType::f32, {2, 3}, {4, 1}).is_contiguous());  // row padding
  EXPECT_FALSE(attn::TensorView(buf, attn::DType::f32, {2, 3}, {1, 2}).is_contiguous());  // column-major
}

TEST(CoreTensorView, ByteSpan) {
  float buf[64];
  const char* base = reinterpret_cast<const char*>(buf);
  const attn::TensorView t(buf, attn::DType::f32, {2, 3});
  EXPECT_EQ(t.byte_span().first, base);
  EXPECT_EQ(t.byte_span().second, base + 6 * 4);
  // Padded rows: the span reaches the last element, not the end of the padding.
  const attn::TensorView padded(buf, attn::DType::f32, {2, 3}, {8, 1});
  EXPECT_EQ(padded.byte_span().second, base + (8 + 2 + 1) * 4);
  // A negative stride reaches below the data pointer.
  const attn::TensorView reversed(buf + 10, attn::DType::f32, {4}, {-2});
  EXPECT_EQ(reversed.byte_span().first, base + 4 * 4);
  EXPECT_EQ(reversed.byte_span().second, base + 11 * 4);
  // Zero elements span nothing.
  const attn::TensorView empty(buf, attn::DType::f32, {0, 3});
  EXPECT_EQ(empty.byte_span().first, empty.byte_span().second);
  // Element size follows the dtype.
  const attn::TensorView half(buf, attn::DType::bf16, {5});
  EXPECT_EQ(half.byte_span().second, base + 10);
}

TEST(CoreTensorView, DefaultIsUndefinedAndBadShapesThrow) {
  const attn::TensorView none;
  EXPECT_FALSE(none.defined());
  EXPECT_EQ(none.numel(), 0);
  float buf[1];
  try {
    attn::TensorView(buf, attn::DType::f32, {2, -1});
    FAIL() << "negative size accepted";
  } catch (const attn::Error& e) {
    EXPECT_EQ(e.argument(), "shape");
    EXPECT_NE(std::string(e.what()).find("shape[1] = -1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(attn::TensorView(buf, attn::DType::f32, {2, 3}, {1}), attn::Error);
  EXPECT_THROW(attn::TensorView(buf, attn::DType::f32, {1, 1, 1, 1, 1}), attn::Error);
}

TEST(CoreTensor, StorageIs64ByteAligned) {
  for (std::int64_t n : {1, 3, 17, 64, 1000}) {
    const attn::Tensor t(attn::DType::f32, {n, 3});
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data()) % 64, 0u) << n;
    EXPECT_TRUE(t.view().is_contiguous());
    EXPECT_EQ(t.numel(), 3 * n);
  }
  const attn::Tensor empty(attn::DType::bf16, {0, 5});
  EXPECT_NE(empty.data(), nullptr);
  EXPECT_EQ(empty.numel(), 0);
}

TEST(CoreTensor, WithGuardFillsNanAroundTheData) {
  const std::int64_t guard = 7;
  const attn::Tensor t = attn::Tensor::with_guard(attn::DType::f32, {2, 3}, guard);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.storage()) % 64, 0u);
  EXPECT_EQ(static_cast<char*>(t.data()) - static_cast<char*>(t.storage()), guard * 4);
  EXPECT_EQ(t.storage_elems(), 6 + 2 * guard);
  const float* all = static_cast<const float*>(t.storage());
  for (std::int64_t e = 0; e < t.storage_elems(); ++e) EXPECT_TRUE(std::isnan(all[e])) << e;
  for (attn::DType dt : {attn::DType::bf16, attn::DType::f16, attn::DType::f64}) {
    const attn::Tensor g = attn::Tensor::with_guard(dt, {4}, 2);
    const attn::TensorView all_view(g.storage(), dt, {g.storage_elems()});
    for (std::int64_t e = 0; e < g.storage_elems(); ++e) EXPECT_TRUE(std::isnan(attn::load_f64(all_view, e)));
  }
  const attn::Tensor b = attn::Tensor::with_guard(attn::DType::boolean, {3}, 1);
  for (std::int64_t e = 0; e < b.storage_elems(); ++e)
    EXPECT_EQ(static_cast<const std::uint8_t*>(b.storage())[e], 0xFF);
  EXPECT_THROW(attn::Tensor::with_guard(attn::DType::f32, {2}, -1), attn::Error);
}

}  // namespace
