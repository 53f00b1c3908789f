// nn::Module: the children's parameters and buffers under their prefixes, parameter lookup by
// name, counts and zeroing of gradients (large ones in parallel pieces).

#include "attn/nn/module.hpp"

#include <algorithm>
#include <cstring>

#include "attn/error.hpp"

namespace attn::nn {
namespace {

// Every child's list (parameters() or buffers()) with "prefix." before each name.
template <class Item>
std::vector<Item> gather(const std::vector<Child>& children, std::vector<Item> (Module::*list)() const) {
  std::vector<Item> all;
  for (const Child& c : children)
    for (Item item : (c.module->*list)()) {
      if (!c.prefix.empty()) item.name = c.prefix + "." + item.name;
      all.push_back(std::move(item));
    }
  return all;
}

}  // namespace

std::vector<Parameter> Module::parameters() const { return gather(children(), &Module::parameters); }

std::vector<Buffer> Module::buffers() const { return gather(children(), &Module::buffers); }

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
