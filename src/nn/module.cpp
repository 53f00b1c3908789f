// nn::Module: the children's parameters and buffers under their prefixes, parameter lookup by
// name, counts and zeroing of gradients (large ones in parallel pieces).

#include "attn/nn/module.hpp"

#include <algorithm>
#include <cstring>

#include "attn/error.hpp"

namespace attn::nn {
namespace {

std::string prefixed(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

std::vector<Parameter> Module::parameters() const {
  std::vector<Parameter> all;
  for (const Child& c : children())
    for (Parameter p : c.module->parameters()) {
      p.name = prefixed(c.prefix, p.name);
      all.push_back(std::move(p));
    }
  return all;
}

std::vector<Buffer> Module::buffers() const {
  std::vector<Buffer> all;
  for (const Child& c : children())
    for (Buffer b : c.module->buffers()) {
      b.name = prefixed(c.prefix, b.name);
      all.push_back(std::move(b));
    }
  return all;
}

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
  constexpr std::size_t kChunk = std::size_t{1} << 16;  // bytes per parallel piece
  for (const Parameter& p : parameters()) {
    const std::size_t bytes = static_cast<std::size_t>(p.grad.numel()) * dtype_size(p.grad.dtype);
    char* g = static_cast<char*>(p.grad.data);
    const auto pieces = static_cast<std::int64_t>((bytes + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (pieces >= 4)
    for (std::int64_t i = 0; i < pieces; ++i) {
      const std::size_t off = static_cast<std::size_t>(i) * kChunk;
      std::memset(g + off, 0, std::min(kChunk, bytes - off));
    }
  }
}

}  // namespace attn::nn
