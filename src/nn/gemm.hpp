#pragma once
// The nn modules' GEMM: the OpenMP-split OpenBLAS GEMM of src/core/blas_gemm.hpp (its top comment
// says why every GEMM runs on attn's one OpenMP team), under the names the modules use.

#include "attn/tensor.hpp"
#include "core/blas_gemm.hpp"

namespace attn::nn::detail {

using blas::gemm;
using blas::gemm_call;
using blas::SingleThreadedBlas;

/// The attn dtype of T.
template <class T>
constexpr DType dtype_of() {
  return sizeof(T) == 4 ? DType::f32 : DType::f64;
}

}  // namespace attn::nn::detail
