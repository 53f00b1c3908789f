#pragma once
// The row passes of the bench's naive BLAS attention (bench/baselines.cpp), over an ISA's traits
// (cpu/isa/vec_traits.hpp): one entry of each ISA's kernel table (cpu/isa/kernels.hpp), so the
// baseline runs attn's own exp at the same width as the kernel it is compared with.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/isa/vec_traits.hpp"

namespace attn::cpu::naive_rows {

template <isa::VecTraits Isa>
void softmax(float* s, std::int64_t rows, std::int64_t cols, std::int64_t ld, std::int64_t causal_offset) {
  using V = typename Isa::V;
  constexpr std::int64_t W = Isa::W;
  for (std::int64_t i = 0; i < rows; ++i) {
    float* row = s + i * ld;
    const std::int64_t hi = causal_offset < 0 ? cols : std::clamp<std::int64_t>(i + causal_offset + 1, 0, cols);
    // 1. row max over the visible columns
    float m = -std::numeric_limits<float>::infinity();
    std::int64_t j = 0;
    if (hi >= W) {
      V vm = Isa::load(row);
      for (j = W; j + W <= hi; j += W) vm = Isa::max(vm, Isa::load(row + j));
      m = Isa::hmax(vm);
    }
    for (; j < hi; ++j) m = std::max(m, row[j]);
    // 2. p = exp(s - m), row sum
    const V vneg_m = Isa::set1(-m);
    V vsum = Isa::zero();
    for (j = 0; j + W <= hi; j += W) {
      const V p = Isa::exp(Isa::add(Isa::load(row + j), vneg_m));
      Isa::store(row + j, p);
      vsum = Isa::add(vsum, p);
    }
    float sum = Isa::hsum(vsum);
    for (; j < hi; ++j) sum += (row[j] = std::exp(row[j] - m));
    // 3. normalise; the masked tail becomes 0
    const V vinv = Isa::set1(hi > 0 ? 1.0f / sum : 0.0f);
    for (j = 0; j + W <= hi; j += W) Isa::store(row + j, Isa::mul(Isa::load(row + j), vinv));
    for (; j < hi; ++j) row[j] *= hi > 0 ? 1.0f / sum : 0.0f;
    for (j = hi; j < cols; ++j) row[j] = 0.0f;
  }
}

// Backward row passes of the naive BLAS backward (baselines.hpp).
// delta[i] = sum_j dout[i, j] * out[i, j] over `cols` columns (rows contiguous, leading dim cols).
template <isa::VecTraits Isa>
void delta(float* delta, const float* dout, const float* out, std::int64_t rows, std::int64_t cols) {
  using V = typename Isa::V;
  constexpr std::int64_t W = Isa::W;
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* a = dout + i * cols;
    const float* b = out + i * cols;
    V acc = Isa::zero();
    std::int64_t j = 0;
    for (; j + W <= cols; j += W) acc = Isa::fma(Isa::load(a + j), Isa::load(b + j), acc);
    float sum = Isa::hsum(acc);
    for (; j < cols; ++j) sum += a[j] * b[j];
    delta[i] = sum;
  }
}

// dS = P o (dP - delta) in place over dp: dp[i, j] = p[i, j] * (dp[i, j] - delta[i]).
template <isa::VecTraits Isa>
void ds(float* dp, const float* p, const float* delta, std::int64_t rows, std::int64_t cols,
                  std::int64_t ld) {
  constexpr std::int64_t W = Isa::W;
  for (std::int64_t i = 0; i < rows; ++i) {
    float* d = dp + i * ld;
    const float* pr = p + i * ld;
    const typename Isa::V vdelta = Isa::set1(delta[i]);
    std::int64_t j = 0;
    for (; j + W <= cols; j += W) Isa::store(d + j, Isa::mul(Isa::load(pr + j), Isa::sub(Isa::load(d + j), vdelta)));
    for (; j < cols; ++j) d[j] = pr[j] * (d[j] - delta[i]);
  }
}

}  // namespace attn::cpu::naive_rows
