#pragma once
// The reference backend: scalar loops in fp64 for any input dtype, every feature of docs/contract.md.
// It materialises S and P on purpose (clarity over speed); it is the oracle of every test.

#include "core/backend.hpp"

namespace attn::ref {

void sdpa_forward(const core::ForwardArgs& args);
void sdpa_backward(const core::BackwardArgs& args);

/// One query row's scores after the full pipeline: s[j] for j in [0, Lk_b), -inf where hidden.
/// Shared by forward and backward so both see the same S. Backward also asks for each element's
/// value before softcap (`pre_softcap`) and before score_mod (`pre_mod`), to differentiate them.
void score_row(const core::SdpaProblem& p, std::int64_t b, std::int64_t h, std::int64_t i, double* s,
               double* pre_softcap = nullptr, double* pre_mod = nullptr);

/// Softmax of one score row in place (P = exp(s - m) / l); returns lse (−inf when fully masked,
/// then P is all zero).
double softmax_row(double* s, std::int64_t n);

}  // namespace attn::ref
