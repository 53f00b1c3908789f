#pragma once
/// State dicts: named tensors in order (name -> owning Tensor), loaded from and saved to
/// safetensors, and the load report of PyTorch's load_state_dict: which expected keys are missing,
/// which given keys are unexpected, which have the wrong shape or a dtype that cannot convert.
/// Strict loading throws one attn::Error listing all of them; non-strict loading copies what fits
/// and returns the report (docs/io.md).

#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "attn/io/safetensors.hpp"
#include "attn/tensor.hpp"

namespace attn::io {

/// Named tensors in insertion order. Names are unique.
class StateDict {
 public:
  /// Adds `tensor` under `name`; throws attn::Error when the name is taken or empty.
  void insert(std::string name, Tensor tensor);
  /// Adds a row-major copy of `view` (any strides).
  void insert_copy(std::string name, const TensorView& view);
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const Tensor* find(std::string_view name) const;
  /// The tensor called `name`; throws attn::Error naming it when absent.
  const Tensor& at(std::string_view name) const;
  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  /// (name, tensor) pairs in insertion order.
  const std::vector<std::pair<std::string, Tensor>>& items() const { return items_; }
  std::vector<std::string> names() const;

  /// The `__metadata__` of the file it came from (kept by save).
  Metadata metadata;

 private:
  std::vector<std::pair<std::string, Tensor>> items_;
  std::unordered_map<std::string, std::size_t> index_;
};

/// Every tensor of a safetensors file, copied into aligned Tensors in file order (metadata kept).
/// Tensors attn cannot hold (dtypes other than attn's, rank 0 or above 4) are an attn::Error naming
/// them.
StateDict load_state_dict(const std::string& path);
StateDict load_state_dict(const SafetensorsFile& file);
/// Writes `state` (with its metadata) to `path`.
void save_state_dict(const std::string& path, const StateDict& state);

/// A parameter a module expects: its canonical name and the memory to load it into (its shape is
/// the expected shape).
struct ParamSlot {
  std::string name;
  TensorView dest;
};

/// One key whose tensor does not fit its slot: what was expected and what came.
struct Mismatch {
  std::string name;
  std::string expected;  ///< "[64, 64] f32"
  std::string got;       ///< "[64, 32] f32"
};

/// What a load found. Lists keep the order of the slots (missing, mismatched) and of the state
/// dict (unexpected).
struct LoadReport {
  std::vector<std::string> missing;     ///< expected, not in the state dict
  std::vector<std::string> unexpected;  ///< in the state dict, not expected
  std::vector<Mismatch> mismatched;     ///< wrong shape, or a dtype that does not convert
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  /// "missing keys: a, b; unexpected keys: c; wrong shapes: d expected [4, 4] f32, got [4, 2] f32".
  std::string describe() const;
};

/// Compares `state` with `slots` without copying anything.
LoadReport check_state_dict(std::span<const ParamSlot> slots, const StateDict& state);
/// Copies every tensor of `state` that fits its slot into the slot's memory (dtype converted
/// between floating types; other dtypes must match). strict: nothing is copied and one attn::Error
/// ("state_dict: ...") lists every missing, unexpected and mismatched key unless the report is ok.
/// Non-strict: what fits is copied and the report is returned.
LoadReport load_into(std::span<const ParamSlot> slots, const StateDict& state, bool strict = true);

}  // namespace attn::io
