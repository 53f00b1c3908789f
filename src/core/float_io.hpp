#pragma once
// One element of a floating tensor (f32, f64, bf16, f16) read as or written from fp32: the scalar
// edge of every kernel (tails, strided rows, masks, outputs in the caller's dtype). Inline, so
// kernels keep them in their loops. Any other dtype is an attn::Error (core/dtype_visit.hpp):
// validation rejects them before a kernel runs, so reaching one is a bug, never silent garbage.

#include <cstdint>

#include "attn/tensor.hpp"
#include "core/dtype_visit.hpp"

namespace attn::core {

/// Element `off` of `base` (dtype `dt`) as fp32.
inline float load_float(const void* base, DType dt, std::int64_t off) {
  return visit_float(dt, "tensor", [&](auto d) {
    using E = Elem<decltype(d)::value>;
    return E::to_f32(static_cast<const typename E::T*>(base)[off]);
  });
}

/// Writes fp32 `x` at `ptr` as dtype `dt` (bf16/f16 round to nearest even).
inline void store_float(DType dt, void* ptr, float x) {
  visit_float(dt, "tensor", [&](auto d) {
    using E = Elem<decltype(d)::value>;
    *static_cast<typename E::T*>(ptr) = E::from_f32(x);
  });
}

}  // namespace attn::core
