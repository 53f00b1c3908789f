// nn::Module: parameter lookup by name, counts and zeroing of gradients.

#include "attn/nn/module.hpp"

#include <cstring>

#include "attn/error.hpp"

namespace attn::nn {

Parameter Module::parameter(const std::string& name) const {
  const std::vector<Parameter> all = parameters();
  std::string names;
  for (const Parameter& p : all) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  throw Error(ErrorKind::value, "name", ::attn::detail::concat("= \"", name, "\", which is not a parameter, expected one of: ", names));
}

std::int64_t Module::num_parameters() const {
  std::int64_t n = 0;
  for (const Parameter& p : parameters()) n += p.value.numel();
  return n;
}

void Module::zero_grad() {
  for (const Parameter& p : parameters())
    std::memset(p.grad.data, 0, static_cast<std::size_t>(p.grad.numel()) * dtype_size(p.grad.dtype));
}

}  // namespace attn::nn
