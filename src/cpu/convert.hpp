#pragma once
// Contiguous rows of the fast path's input dtypes (f32, bf16, f16) widened to fp32 with an ISA's
// vector loads: the one conversion the forward and backward kernels share. Adding an input dtype:
// its core::Elem (core/dtype_visit.hpp), is_input_dtype and the visit list, and its vector load.
// The template is included by the kernel templates inside a per-ISA region (cpu/isa/isa_begin.hpp),
// never first at baseline from an ISA file, so its vector code gets the ISA's target.

#include <cstdint>
#include <cstring>

#include "core/dtype_visit.hpp"
#include "cpu/isa/vec_traits.hpp"

namespace attn::cpu {

/// The input dtypes of the cpu fast path.
inline bool is_input_dtype(DType d) { return d == DType::f32 || d == DType::bf16 || d == DType::f16; }

template <isa::VecTraits I>
struct Convert {
  /// n contiguous elements of dtype dt (an input dtype) as fp32; any other dtype is an attn::Error.
  static void to_f32(const void* src, DType dt, std::int64_t n, float* dst) {
    core::visit_dtype<DType::f32, DType::bf16, DType::f16>(dt, "input", [&](auto d) {
      constexpr DType kD = decltype(d)::value;
      if constexpr (kD == DType::f32) {
        std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
      } else {
        const auto* h = static_cast<const std::uint16_t*>(src);
        std::int64_t c = 0;
        for (; c + I::W <= n; c += I::W) I::store(dst + c, kD == DType::bf16 ? I::load_bf16(h + c) : I::load_f16(h + c));
        for (; c < n; ++c) dst[c] = core::Elem<kD>::to_f32(h[c]);
      }
    });
  }

  /// dst[c·dst_stride] = src[c·src_stride]·mul for c < n, written as dtype dt (any float dtype of the
  /// API; bf16/f16 round to nearest even). The dtype is visited once per row, not per element (the
  /// kernels' dK/dV and output rows).
  static void from_f32(const float* src, std::int64_t src_stride, float mul, std::int64_t n, DType dt, void* dst,
                       std::int64_t dst_stride) {
    core::visit_float(dt, "output", [&](auto d) {
      using E = core::Elem<decltype(d)::value>;
      auto* out = static_cast<typename E::T*>(dst);
      if (src_stride == 1 && dst_stride == 1)  // a loop the compiler vectorises
        for (std::int64_t c = 0; c < n; ++c) out[c] = E::from_f32(src[c] * mul);
      else
        for (std::int64_t c = 0; c < n; ++c) out[c * dst_stride] = E::from_f32(src[c * src_stride] * mul);
    });
  }
};

}  // namespace attn::cpu
