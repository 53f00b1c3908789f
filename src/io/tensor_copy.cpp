// Row-major copies for state dicts (byte copies, no dtype conversion).

#include "io/tensor_copy.hpp"

#include <array>
#include <cstring>

#include "attn/error.hpp"

namespace attn::io {

namespace {
// Copies every element of `src` in row-major order to contiguous `dst`.
void copy_row_major(void* dst, const TensorView& src) {
  const std::size_t esize = dtype_size(src.dtype);
  const std::int64_t n = src.numel();
  if (n == 0) return;
  if (src.is_contiguous()) {
    std::memcpy(dst, src.data, std::size_t(n) * esize);
    return;
  }
  std::array<std::int64_t, kMaxRank> idx{};
  auto* out = static_cast<char*>(dst);
  for (std::int64_t e = 0; e < n; ++e, out += esize) {
    std::int64_t off = 0;
    for (int a = 0; a < src.rank; ++a) off += idx[std::size_t(a)] * src.strides[std::size_t(a)];
    std::memcpy(out, src.at(off), esize);
    for (int a = src.rank - 1; a >= 0 && ++idx[std::size_t(a)] == src.shape[std::size_t(a)]; --a) idx[std::size_t(a)] = 0;
  }
}

Tensor empty_like_shape(DType dtype, const TensorView& v) {
  return Tensor(dtype, std::span<const std::int64_t>(v.shape.data(), std::size_t(v.rank)));
}
}  // namespace

Tensor clone(const TensorView& v) {
  ATTN_CHECK(v.defined(), value, "tensor", "is undefined, expected a tensor");
  Tensor t = empty_like_shape(v.dtype, v);
  copy_row_major(t.data(), v);
  return t;
}

Tensor slice_rows(const TensorView& v, std::int64_t begin, std::int64_t end) {
  ATTN_CHECK(v.rank >= 1 && begin >= 0 && begin <= end && end <= v.shape[0], shape, "tensor", "has shape ",
             v.shape_string(), ", expected rows [", begin, ", ", end, ") inside it");
  TensorView part = v;
  part.data = v.at(begin * v.strides[0]);
  part.shape[0] = end - begin;
  return clone(part);
}

Tensor cat_rows(const std::vector<const Tensor*>& parts) {
  ATTN_CHECK(!parts.empty(), value, "tensors", "is empty, expected at least one tensor to concatenate");
  TensorView shape = parts[0]->view();
  shape.shape[0] = 0;
  for (const Tensor* p : parts) {
    const TensorView& v = p->view();
    bool same = v.rank == shape.rank && v.dtype == shape.dtype;
    for (int a = 1; same && a < v.rank; ++a) same = v.shape[a] == shape.shape[a];
    ATTN_CHECK(same, shape, "tensors", "has ", v.shape_string(), " ", dtype_name(v.dtype), ", expected a tensor that stacks under ",
               parts[0]->view().shape_string(), " ", dtype_name(shape.dtype), " (same rank, dtype and trailing dims)");
    shape.shape[0] += v.shape[0];
  }
  Tensor t = empty_like_shape(shape.dtype, shape);
  auto* out = static_cast<char*>(t.data());
  for (const Tensor* p : parts) {
    copy_row_major(out, p->view());
    out += p->numel() * std::int64_t(dtype_size(shape.dtype));
  }
  return t;
}

Tensor transpose2d(const TensorView& v) {
  ATTN_CHECK(v.rank == 2, shape, "tensor", "has rank ", v.rank, " (shape ", v.shape_string(),
             "), expected rank 2 (a transpose)");
  return clone(v.permute({1, 0}));
}

}  // namespace attn::io
