// naive_softmax.hpp for AVX-512 (F/BW/DQ/VL), with attn's Avx512::exp.
// GCC 12 raises false -Wmaybe-uninitialized inside AVX-512 intrinsics (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "naive_softmax.hpp"

#define ATTN_ISA_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx512.hpp"
#include "naive_softmax_impl.hpp"
namespace attn::bench {
namespace {
void softmax_rows_avx512_fn(float* s, std::int64_t rows, std::int64_t cols, std::int64_t ld, std::int64_t off) {
  softmax_rows_impl<attn::cpu::isa::Avx512>(s, rows, cols, ld, off);
}
void delta_rows_avx512_fn(float* delta, const float* dout, const float* out, std::int64_t rows, std::int64_t cols) {
  delta_rows_impl<attn::cpu::isa::Avx512>(delta, dout, out, rows, cols);
}
void ds_rows_avx512_fn(float* dp, const float* p, const float* delta, std::int64_t rows, std::int64_t cols,
                     std::int64_t ld) {
  ds_rows_impl<attn::cpu::isa::Avx512>(dp, p, delta, rows, cols, ld);
}
}  // namespace
}  // namespace attn::bench
#include "cpu/isa/isa_end.hpp"

attn::bench::SoftmaxRowsFn attn::bench::softmax_rows_avx512() { return softmax_rows_avx512_fn; }
attn::bench::BwdRowFns attn::bench::bwd_rows_avx512() { return {delta_rows_avx512_fn, ds_rows_avx512_fn}; }
