#pragma once
// Parameter storage of the nn modules: one zeroed buffer holding every parameter of a module
// followed by their gradients, and the prefixing of sub-modules' parameter names.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"
#include "nn/gemm.hpp"

namespace attn::nn::detail {

/// Values of sizes n_0, n_1, ... then their gradients, in one zeroed buffer. A size of 0 gives
/// null pointers.
template <class T>
struct ParamBlock {
  Tensor storage;
  std::vector<T*> value, grad;
  explicit ParamBlock(std::initializer_list<std::int64_t> sizes) {
    std::int64_t total = 0;
    for (std::int64_t n : sizes) total += n;
    storage = Tensor(dtype_of<T>(), {std::max<std::int64_t>(2 * total, 1)});
    T* p = storage.template ptr<T>();
    std::memset(p, 0, static_cast<std::size_t>(std::max<std::int64_t>(2 * total, 1)) * sizeof(T));
    T* g = p + total;
    for (std::int64_t n : sizes) {
      value.push_back(n ? p : nullptr);
      grad.push_back(n ? g : nullptr);
      p += n;
      g += n;
    }
  }
};

/// Appends `sub`'s parameters to `out` with names "prefix.name".
inline void append_prefixed(std::vector<Parameter>& out, const std::string& prefix, const Module& sub) {
  for (Parameter p : sub.parameters()) {
    p.name = prefix + "." + p.name;
    out.push_back(std::move(p));
  }
}

}  // namespace attn::nn::detail
