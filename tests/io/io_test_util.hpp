#pragma once
// Helpers of the io tests: tensors filled with a formula of their index, and error capture.

#include <functional>
#include <string>

#include "attn/error.hpp"
#include "attn/tensor.hpp"

namespace attn::io::test {

/// A row-major tensor whose element (i, j) (or (i) for rank 1) is f(i, j).
inline Tensor formula(DType dtype, std::initializer_list<std::int64_t> shape,
                      const std::function<double(std::int64_t, std::int64_t)>& f) {
  Tensor t(dtype, shape);
  const TensorView& v = t.view();
  const std::int64_t cols = v.rank == 1 ? 1 : v.shape[1];
  for (std::int64_t e = 0; e < t.numel(); ++e) store_f64(v, e, f(e / cols, e % cols));
  return t;
}

/// Element (i, j) of a rank-2 view, or (i) of a rank-1 view.
inline double at(const TensorView& v, std::int64_t i, std::int64_t j = 0) {
  return load_f64(v, v.rank == 1 ? i * v.strides[0] : v.offset({i, j}));
}

/// The message of the attn::Error `fn` throws, "" when it throws none.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace attn::io::test
