#pragma once
// A float view of rank 1-3 seen as a row-major matrix [M, C] (rows = every index but the last)
// for the projection GEMMs: in place when the last axis has stride 1 and the row axes collapse
// into one stride, else a dense copy.

#include <algorithm>
#include <cstdint>

#include "attn/error.hpp"
#include "attn/tensor.hpp"
#include "nn/gemm.hpp"

namespace attn::nn::detail {

template <class T>
struct Rows {
  const T* data = nullptr;
  std::int64_t M = 0, C = 0, ld = 0;
  Tensor copy;  // owns the data when the view could not be read in place
};

template <class T>
Rows<T> as_rows(const TensorView& x, const char* name) {
  ATTN_CHECK(x.rank >= 1 && x.rank <= 3, shape, name, "has rank ", x.rank, " (shape ", x.shape_string(), "), expected 1 to 3");
  Rows<T> r;
  r.C = x.shape[x.rank - 1];
  r.M = 1;
  for (int a = 0; a + 1 < x.rank; ++a) r.M *= x.shape[a];
  // Row axes with more than one index, outermost first.
  std::int64_t ld = r.C, inner_stride = x.strides[x.rank - 1];
  bool in_place = r.C <= 1 || inner_stride == 1;
  int last = -1;
  for (int a = x.rank - 2; a >= 0 && in_place; --a) {
    if (x.shape[a] <= 1) continue;
    if (last < 0) {
      ld = x.strides[a];
      in_place = ld >= r.C;
    } else {
      in_place = x.strides[a] == x.strides[last] * x.shape[last];
    }
    last = a;
  }
  if (in_place) {
    r.data = static_cast<const T*>(x.data);
    r.ld = std::max<std::int64_t>(ld, std::max<std::int64_t>(r.C, 1));
    return r;
  }
  r.copy = Tensor(dtype_of<T>(), {r.M, r.C});
  T* dst = r.copy.template ptr<T>();
  const std::int64_t d0 = x.rank == 3 ? x.shape[0] : 1, d1 = x.rank >= 2 ? x.shape[x.rank - 2] : 1;
  const std::int64_t s0 = x.rank == 3 ? x.strides[0] : 0, s1 = x.rank >= 2 ? x.strides[x.rank - 2] : 0;
  const T* src = static_cast<const T*>(x.data);
  for (std::int64_t i = 0; i < d0; ++i)
    for (std::int64_t j = 0; j < d1; ++j)
      for (std::int64_t c = 0; c < r.C; ++c) dst[(i * d1 + j) * r.C + c] = src[i * s0 + j * s1 + c * inner_stride];
  r.data = dst;
  r.ld = std::max<std::int64_t>(r.C, 1);
  return r;
}

}  // namespace attn::nn::detail
