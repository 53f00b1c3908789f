#pragma once
/// attn::nn modules (docs/nn.md): each module owns its parameters and their gradients and has an
/// explicit forward and backward (llm.c style, no autograd). Parameters are listed by name so
/// that state dicts can be read and written by name.

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

/// Base of every module: named parameters and their gradients.
class Module {
 public:
  virtual ~Module() = default;
  /// Every parameter, in a fixed order, with its name (sub-modules' names are prefixed "name.").
  virtual std::vector<Parameter> parameters() const = 0;
  /// The parameter called `name`; an attn::Error listing the names when there is none.
  Parameter parameter(const std::string& name) const;
  /// Total number of parameter elements.
  std::int64_t num_parameters() const;
  /// Sets every gradient to zero.
  void zero_grad();
};

}  // namespace attn::nn
