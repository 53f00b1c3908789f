// nn::Dropout: Philox keep bits generated four at a time (one Philox block per 4 elements), never
// stored (include/attn/nn/dropout.hpp).

#include "attn/nn/dropout.hpp"

#include <cmath>

#include "attn/error.hpp"
#include "core/philox.hpp"

namespace attn::nn {
namespace {

core::PhiloxBlock words(std::uint64_t seed, std::uint32_t stream, std::uint64_t offset, std::int64_t block) {
  const auto b = static_cast<std::uint64_t>(block);
  return core::philox4x32_10(
      {static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32), stream, static_cast<std::uint32_t>(offset)},
      {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
}

}  // namespace

template <class T>
Dropout<T>::Dropout(double p, std::uint64_t seed, std::uint32_t stream) : p_(p), seed_(seed), stream_(stream) {
  ATTN_CHECK(p >= 0.0 && p < 1.0, value, "dropout", "p = ", p, ", expected 0 ≤ p < 1");
  threshold_ = static_cast<std::uint32_t>(std::floor(p * 4294967296.0));
}

template <class T>
bool Dropout<T>::keep(std::int64_t i, std::uint64_t offset) const {
  return words(seed_, stream_, offset, i >> 2)[static_cast<std::size_t>(i & 3)] >= threshold_;
}

template <class T>
void Dropout<T>::forward(const T* x, std::int64_t n, T* y, std::uint64_t offset) const {
  if (!active()) {
    if (y != x)
      for (std::int64_t i = 0; i < n; ++i) y[i] = x[i];
    return;
  }
  const T scale = static_cast<T>(1.0 / (1.0 - p_));
  const std::int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const core::PhiloxBlock w = words(seed_, stream_, offset, blk);
    for (std::int64_t j = 0; j < 4 && blk * 4 + j < n; ++j) {
      const std::int64_t i = blk * 4 + j;
      y[i] = w[static_cast<std::size_t>(j)] >= threshold_ ? x[i] * scale : T(0);
    }
  }
}

template class Dropout<float>;
template class Dropout<double>;

}  // namespace attn::nn
