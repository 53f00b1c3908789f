#pragma once
// One element of a floating tensor (f32, f64, bf16, f16) read as or written from fp32: the scalar
// edge of every kernel (tails, strided rows, masks, outputs in the caller's dtype). Inline, so
// kernels keep them in their loops; non-float dtypes never reach here (validation rejects them).

#include <cstdint>

#include "attn/tensor.hpp"
#include "core/half.hpp"

namespace attn::core {

/// Element `off` of `base` (dtype `dt`) as fp32.
inline float load_float(const void* base, DType dt, std::int64_t off) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(base)[off];
    case DType::bf16: return bf16_to_f32(static_cast<const std::uint16_t*>(base)[off]);
    case DType::f16: return f16_to_f32(static_cast<const std::uint16_t*>(base)[off]);
    case DType::f64: return static_cast<float>(static_cast<const double*>(base)[off]);
    default: return 0.0f;
  }
}

/// Writes fp32 `x` at `ptr` as dtype `dt` (bf16/f16 round to nearest even).
inline void store_float(DType dt, void* ptr, float x) {
  switch (dt) {
    case DType::f32: *static_cast<float*>(ptr) = x; break;
    case DType::f64: *static_cast<double*>(ptr) = x; break;
    case DType::bf16: *static_cast<std::uint16_t*>(ptr) = f32_to_bf16(x); break;
    case DType::f16: *static_cast<std::uint16_t*>(ptr) = f32_to_f16(x); break;
    default: break;
  }
}

}  // namespace attn::core
