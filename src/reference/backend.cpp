// Registers the reference backend: it runs every valid call except a backward whose score_mod has
// no derivative.

#include "reference/sdpa_ref.hpp"

namespace attn::core {
namespace {

bool can_forward(const ForwardArgs&, Reasons&) { return true; }

bool can_backward(const BackwardArgs& a, Reasons& why) {
  if (a.p.mask().score_mod && !a.p.mask().score_mod.grad) {
    why.push_back("score_mod has no grad function (backward needs d value / d s)");
    return false;
  }
  return true;
}

}  // namespace

const BackendOps& reference_backend() {
  static const BackendOps ops{Backend::reference, can_forward, ref::sdpa_forward, can_backward, ref::sdpa_backward};
  return ops;
}

}  // namespace attn::core
