// StateDict, its safetensors load/save, and the load report (check_state_dict, load_into).

#include "attn/io/state_dict.hpp"

#include <array>
#include <cstring>
#include <sstream>
#include <type_traits>
#include <unordered_set>

#include "attn/error.hpp"
#include "attn/nn/weight_cache.hpp"
#include "io/tensor_copy.hpp"

namespace attn::io {

void StateDict::insert(std::string name, Tensor tensor) {
  ATTN_CHECK(!name.empty(), value, "name", "is empty, expected a non-empty state dict key");
  ATTN_CHECK(index_.find(name) == index_.end(), value, "name", "= \"", name,
             "\", which the state dict already has, expected a new key");
  index_.emplace(name, items_.size());
  items_.emplace_back(std::move(name), std::move(tensor));
}

void StateDict::insert_copy(std::string name, const TensorView& view) { insert(std::move(name), clone(view)); }

const Tensor* StateDict::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

const Tensor& StateDict::at(std::string_view name) const {
  const Tensor* t = find(name);
  ATTN_CHECK(t != nullptr, value, std::string(name), "is not in the state dict, expected one of its ", items_.size(),
             " keys");
  return *t;
}

std::vector<std::string> StateDict::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : items_) out.push_back(name);
  return out;
}

StateDict load_state_dict(const SafetensorsFile& file) {
  StateDict sd;
  sd.metadata = file.metadata();
  for (const SafetensorsEntry& e : file.tensors()) sd.insert(e.name, e.to_tensor());
  return sd;
}

StateDict load_state_dict(const std::string& path) { return load_state_dict(SafetensorsFile::open(path)); }

void save_state_dict(const std::string& path, const StateDict& state) {
  std::vector<std::pair<std::string, TensorView>> views;
  for (const auto& [name, t] : state.items()) views.emplace_back(name, t.view());
  save_safetensors(path, views, state.metadata);
}

namespace {
std::string describe_tensor(const TensorView& v) { return v.shape_string() + " " + dtype_name(v.dtype); }

bool same_shape(const TensorView& a, const TensorView& b) {
  if (a.rank != b.rank) return false;
  for (int d = 0; d < a.rank; ++d)
    if (a.shape[d] != b.shape[d]) return false;
  return true;
}

// Floating types convert to each other; anything else must match exactly.
bool converts(DType from, DType to) { return from == to || (is_floating(from) && is_floating(to)); }

template <class T>
void join(std::ostringstream& os, const std::vector<T>& items, const char* title, bool& first) {
  if (items.empty()) return;
  os << (first ? "" : "; ") << title;
  first = false;
  for (std::size_t i = 0; i < items.size(); ++i) {
    os << (i ? ", " : "");
    if constexpr (std::is_same_v<T, Mismatch>)
      os << items[i].name << " expected " << items[i].expected << ", got " << items[i].got;
    else
      os << items[i];
  }
}

void copy_converting(const TensorView& dest, const TensorView& src) {
  if (dest.dtype == src.dtype && dest.is_contiguous()) {
    const Tensor c = clone(src);
    std::memcpy(dest.data, c.data(), std::size_t(c.numel()) * dtype_size(src.dtype));
    return;
  }
  std::array<std::int64_t, kMaxRank> idx{};
  for (std::int64_t e = 0; e < src.numel(); ++e) {
    std::int64_t so = 0, dof = 0;
    for (int a = 0; a < src.rank; ++a) {
      so += idx[std::size_t(a)] * src.strides[std::size_t(a)];
      dof += idx[std::size_t(a)] * dest.strides[std::size_t(a)];
    }
    if (dest.dtype == src.dtype)
      std::memcpy(dest.at(dof), src.at(so), dtype_size(src.dtype));
    else
      store_f64(dest, dof, load_f64(src, so));
    for (int a = src.rank - 1; a >= 0 && ++idx[std::size_t(a)] == src.shape[std::size_t(a)]; --a) idx[std::size_t(a)] = 0;
  }
}
}  // namespace

std::string LoadReport::describe() const {
  if (ok()) return "all keys matched";
  std::ostringstream os;
  bool first = true;
  join(os, missing, "missing keys: ", first);
  join(os, unexpected, "unexpected keys: ", first);
  join(os, mismatched, "wrong shapes or dtypes: ", first);
  return os.str();
}

LoadReport check_state_dict(std::span<const ParamSlot> slots, const StateDict& state) {
  LoadReport r;
  std::unordered_set<std::string> expected;
  for (const ParamSlot& s : slots) {
    ATTN_CHECK(expected.insert(s.name).second, value, "slots", "list parameter \"", s.name,
               "\" twice, expected each parameter once");
    const Tensor* t = state.find(s.name);
    if (t == nullptr)
      r.missing.push_back(s.name);
    else if (!same_shape(t->view(), s.dest) || !converts(t->dtype(), s.dest.dtype))
      r.mismatched.push_back({s.name, describe_tensor(s.dest), describe_tensor(t->view())});
  }
  for (const auto& [name, t] : state.items())
    if (!expected.count(name)) r.unexpected.push_back(name);
  return r;
}

LoadReport load_into(std::span<const ParamSlot> slots, const StateDict& state, bool strict) {
  LoadReport r = check_state_dict(slots, state);
  if (strict && !r.ok())
    throw Error(ErrorKind::value, "state_dict",
                r.describe() + ", expected exactly the module's keys with their shapes and dtypes (strict load)");
  std::unordered_set<std::string> bad;
  for (const Mismatch& m : r.mismatched) bad.insert(m.name);
  for (const ParamSlot& s : slots) {
    const Tensor* t = state.find(s.name);
    if (t != nullptr && !bad.count(s.name)) copy_converting(s.dest, t->view());
  }
  nn::mark_weights_changed();  // the slots may be module weights with kept bf16 copies (docs/nn.md)
  return r;
}

}  // namespace attn::io
