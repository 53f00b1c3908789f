#pragma once
// Row-major copies the state-dict code needs: a clone of any strided view, rows of a 2-D tensor,
// rows stacked, a 2-D transpose.

#include <vector>

#include "attn/tensor.hpp"

namespace attn::io {

/// A row-major copy of `v` (any strides).
Tensor clone(const TensorView& v);
/// Rows [begin, end) of a 2-D tensor (a 1-D tensor: elements [begin, end)).
Tensor slice_rows(const TensorView& v, std::int64_t begin, std::int64_t end);
/// The tensors stacked along axis 0 (same dtype, same trailing shape).
Tensor cat_rows(const std::vector<const Tensor*>& parts);
/// The transpose of a 2-D tensor.
Tensor transpose2d(const TensorView& v);

}  // namespace attn::io
