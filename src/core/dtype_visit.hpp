#pragma once
// dtype dispatch with no silent default: visit_dtype<Ds...>(dt, what, f) calls
// f(std::integral_constant<DType, d>{}) for the one d in Ds equal to dt, and throws attn::Error
// naming `what` for any other dtype — a switch whose default branch reads another dtype cannot
// happen. Elem<d> gives the storage type and the fp32 conversions of each element dtype.
// Adding a dtype: its Elem specialisation here, then the Ds lists that should accept it.

#include <cstdint>
#include <string>
#include <type_traits>

#include "attn/error.hpp"
#include "attn/tensor.hpp"
#include "core/half.hpp"

namespace attn::core {

template <DType D>
struct Elem;
template <>
struct Elem<DType::f32> {
  using T = float;
  static float to_f32(T x) { return x; }
  static T from_f32(float x) { return x; }
};
template <>
struct Elem<DType::f64> {
  using T = double;
  static float to_f32(T x) { return static_cast<float>(x); }
  static T from_f32(float x) { return x; }
};
template <>
struct Elem<DType::bf16> {
  using T = std::uint16_t;
  static float to_f32(T x) { return bf16_to_f32(x); }
  static T from_f32(float x) { return f32_to_bf16(x); }  // round to nearest even
};
template <>
struct Elem<DType::f16> {
  using T = std::uint16_t;
  static float to_f32(T x) { return f16_to_f32(x); }
  static T from_f32(float x) { return f32_to_f16(x); }  // round to nearest even
};
template <>
struct Elem<DType::i8> {  // the KV cache's quantised rows (the scale lives beside them)
  using T = std::int8_t;
  static float to_f32(T x) { return static_cast<float>(x); }
};

template <DType D>
using DTypeTag = std::integral_constant<DType, D>;

namespace detail {
template <DType... Ds>
std::string dtype_list() {
  std::string s;
  ((s += (s.empty() ? "" : ", ") + std::string(dtype_name(Ds))), ...);
  return s;
}
template <DType First, DType... Rest, class All, class F>
decltype(auto) visit_dtype(DType dt, const char* what, All all, F&& f) {
  if (dt == First) return f(DTypeTag<First>{});
  if constexpr (sizeof...(Rest) > 0) {
    return visit_dtype<Rest...>(dt, what, all, static_cast<F&&>(f));
  } else {
    throw Error(ErrorKind::dtype, what, std::string("has dtype ") + dtype_name(dt) + ", expected one of " + all());
  }
}
}  // namespace detail

/// f(DTypeTag<d>{}) for dt == d in Ds; attn::Error naming `what` otherwise.
template <DType... Ds, class F>
decltype(auto) visit_dtype(DType dt, const char* what, F&& f) {
  static_assert(sizeof...(Ds) > 0);
  return detail::visit_dtype<Ds...>(dt, what, &detail::dtype_list<Ds...>, static_cast<F&&>(f));
}

/// The floating dtypes a tensor of the SDPA API may have (inputs, outputs, bias).
template <class F>
decltype(auto) visit_float(DType dt, const char* what, F&& f) {
  return visit_dtype<DType::f32, DType::f64, DType::bf16, DType::f16>(dt, what, static_cast<F&&>(f));
}

}  // namespace attn::core
