#pragma once
/// attn::nn modules (docs/nn.md): each module owns its parameters and their gradients and has an
/// explicit forward and backward (llm.c style, no autograd). Parameters and buffers are listed by
/// name so that state dicts can be read and written by name.

#include <cstdint>
#include <string>
#include <vector>

#include "attn/tensor.hpp"

namespace attn::nn {

/// One named parameter: its value and its gradient (same shape, row-major). Backward calls add
/// into `grad` (zero_grad() clears it), so gradients of several backward calls accumulate.
struct Parameter {
  std::string name;  ///< e.g. "q_proj.weight"
  TensorView value;
  TensorView grad;
};

/// One named buffer: state that is not trained but belongs in the state dict, as torch's
/// persistent buffers (FAVOR+'s random projection). Loading a state dict writes `value`.
struct Buffer {
  std::string name;  ///< e.g. "self_attn.projection"
  TensorView value;
};

class Module;

/// A sub-module and the prefix of its names ("" = its names as they are).
struct Child {
  std::string prefix;
  const Module* module;
};

/// Base of every module: named parameters and their gradients, named buffers.
class Module {
 public:
  virtual ~Module() = default;
  /// The sub-modules whose parameters and buffers this module's lists include, in order.
  virtual std::vector<Child> children() const { return {}; }
  /// Every parameter, in a fixed order, with its name (sub-modules' names are prefixed "name.").
  /// The default lists the children's; a module that owns parameters itself overrides it.
  virtual std::vector<Parameter> parameters() const;
  /// Every buffer, named as parameters are. The default lists the children's.
  virtual std::vector<Buffer> buffers() const;
  /// The parameter called `name`; an attn::Error listing the names when there is none.
  Parameter parameter(const std::string& name) const;
  /// Total number of parameter elements.
  std::int64_t num_parameters() const;
  /// Sets every gradient to zero.
  void zero_grad();
};

}  // namespace attn::nn
