// PLACEHOLDER: replaced by the reference backward.
#include "attn/error.hpp"
#include "reference/sdpa_ref.hpp"
namespace attn::ref {
void sdpa_backward(const core::BackwardArgs&) { throw Error("sdpa_backward", "not implemented yet"); }
}  // namespace attn::ref
