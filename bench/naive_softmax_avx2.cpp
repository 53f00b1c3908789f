// naive_softmax.hpp for AVX2 + FMA, with attn's Avx2::exp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "naive_softmax.hpp"

#define ATTN_ISA_TARGET "avx2,fma,f16c"
#include "cpu/isa/isa_begin.hpp"
#include "cpu/isa/vec_avx2.hpp"
#include "naive_softmax_impl.hpp"
namespace attn::bench {
namespace {
void softmax_rows_avx2_fn(float* s, std::int64_t rows, std::int64_t cols, std::int64_t ld, std::int64_t off) {
  softmax_rows_impl<attn::cpu::isa::Avx2>(s, rows, cols, ld, off);
}
void delta_rows_avx2_fn(float* delta, const float* dout, const float* out, std::int64_t rows, std::int64_t cols) {
  delta_rows_impl<attn::cpu::isa::Avx2>(delta, dout, out, rows, cols);
}
void ds_rows_avx2_fn(float* dp, const float* p, const float* delta, std::int64_t rows, std::int64_t cols,
                     std::int64_t ld) {
  ds_rows_impl<attn::cpu::isa::Avx2>(dp, p, delta, rows, cols, ld);
}
}  // namespace
}  // namespace attn::bench
#include "cpu/isa/isa_end.hpp"

attn::bench::SoftmaxRowsFn attn::bench::softmax_rows_avx2() { return softmax_rows_avx2_fn; }
attn::bench::BwdRowFns attn::bench::bwd_rows_avx2() { return {delta_rows_avx2_fn, ds_rows_avx2_fn}; }
