#pragma once
// ATTN_SCORE_TERMS=rows runs the additive score terms and keep rules of the forward and backward
// element passes in the per-row form (variants::finish_row) instead of the vector form
// (FwdKernel::additive_pass, BwdKernel::element_pass); kept to time the two (docs/performance.md §2.2).

#include <cstdlib>
#include <string>

namespace attn::cpu {

inline bool vector_score_terms() {
  static const bool vector = [] {
    const char* env = std::getenv("ATTN_SCORE_TERMS");
    return !(env && std::string(env) == "rows");
  }();
  return vector;
}

}  // namespace attn::cpu
