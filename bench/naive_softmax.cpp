// naive_softmax.hpp: the scalar version and the run-time choice.
#include "naive_softmax.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "cpu/isa/vec_scalar.hpp"
#include "naive_softmax_impl.hpp"

namespace attn::bench {
namespace {
void softmax_rows_scalar_fn(float* s, std::int64_t rows, std::int64_t cols, std::int64_t ld, std::int64_t off) {
  softmax_rows_impl<attn::cpu::isa::Scalar>(s, rows, cols, ld, off);
}
void delta_rows_scalar_fn(float* delta, const float* dout, const float* out, std::int64_t rows, std::int64_t cols) {
  delta_rows_impl<attn::cpu::isa::Scalar>(delta, dout, out, rows, cols);
}
void ds_rows_scalar_fn(float* dp, const float* p, const float* delta, std::int64_t rows, std::int64_t cols,
                       std::int64_t ld) {
  ds_rows_impl<attn::cpu::isa::Scalar>(dp, p, delta, rows, cols, ld);
}
}  // namespace

BwdRowFns bwd_rows_scalar() { return {delta_rows_scalar_fn, ds_rows_scalar_fn}; }

BwdRowFns best_bwd_rows() {
  const char* name = "";
  best_softmax_rows(&name);
  const std::string isa = name;
  if (isa == "avx512") return bwd_rows_avx512();
  if (isa == "avx2") return bwd_rows_avx2();
  return bwd_rows_scalar();
}

SoftmaxRowsFn softmax_rows_scalar() { return softmax_rows_scalar_fn; }

SoftmaxRowsFn best_softmax_rows(const char** name) {
  const char* chosen = "scalar";
  SoftmaxRowsFn fn = softmax_rows_scalar();
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    chosen = "avx512";
    fn = softmax_rows_avx512();
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    chosen = "avx2";
    fn = softmax_rows_avx2();
  }
#endif
  if (name) *name = chosen;
  return fn;
}

}  // namespace attn::bench
