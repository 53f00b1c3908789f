#pragma once
// The backend interface of docs/contract.md §11: each backend says whether it can run a validated problem
// (with named reasons when not) and runs it. dispatch.cpp walks them in order.

#include <string>
#include <vector>

#include "core/problem.hpp"

namespace attn::core {

using Reasons = std::vector<std::string>;

struct ForwardArgs {
  const SdpaProblem& p;
  const SdpaOutputs& o;
};

struct BackwardArgs {
  const SdpaProblem& p;
  const SdpaGrads& g;
  const TensorView& dout;
  const TensorView& out;
  const TensorView& lse;
  const TensorView& dlse;  // optional: gradient with respect to lse (Δ_i −= dlse_i)
};

struct BackendOps {
  Backend id;
  bool (*can_forward)(const ForwardArgs&, Reasons&);
  void (*forward)(const ForwardArgs&);
  bool (*can_backward)(const BackwardArgs&, Reasons&);
  void (*backward)(const BackwardArgs&);
};

/// Backends in dispatch order (fastest first, reference last). Defined in dispatch.cpp.
const std::vector<BackendOps>& backends();

/// Backend registration: each backend's translation unit defines its ops function.
const BackendOps& reference_backend();

}  // namespace attn::core
