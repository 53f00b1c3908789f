// nn::MeanMix, the no-attention control of the encoder layer (include/attn/nn/transformer.hpp):
//   forward   m[b] = Σ_{j < len_b} x[b, j] / len_b;   y[b, l] = m[b]·Wᵀ + bias for every l
//   backward  dm[b] = (Σ_l dy[b, l])·W, dW += Σ_b (Σ_l dy[b, l])ᵀ·m[b];  dx[b, j] = dm[b] / len_b (j < len_b)

#include <cstring>

#include "attn/error.hpp"
#include "attn/nn/transformer.hpp"
#include "nn/gemm.hpp"

namespace attn::nn {

template <class T>
MeanMix<T>::MeanMix(std::int64_t dim, bool bias, std::uint64_t seed) : proj_(dim, dim, bias, seed) {}

template <class T>
void MeanMix<T>::forward(const T* x, std::int64_t B, std::int64_t L, const std::vector<std::int64_t>& lengths, T* y) {
  const std::int64_t E = proj_.in_features();
  B_ = B;
  L_ = L;
  lengths_.assign(static_cast<std::size_t>(B), L);
  if (!lengths.empty()) lengths_ = lengths;
  mean_ = Tensor(detail::dtype_of<T>(), {std::max<std::int64_t>(B * E, 1)});
  T* m = mean_.ptr<T>();
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t n = lengths_[static_cast<std::size_t>(b)];
    for (std::int64_t e = 0; e < E; ++e) m[b * E + e] = T(0);
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t e = 0; e < E; ++e) m[b * E + e] += x[(b * L + j) * E + e];
    const T inv = n > 0 ? T(1) / static_cast<T>(n) : T(0);
    for (std::int64_t e = 0; e < E; ++e) m[b * E + e] *= inv;
  }
  std::vector<T> row(static_cast<std::size_t>(E));
  for (std::int64_t b = 0; b < B; ++b) {
    proj_.forward(m + b * E, 1, E, row.data(), E);
    for (std::int64_t l = 0; l < L; ++l)
      std::memcpy(y + (b * L + l) * E, row.data(), static_cast<std::size_t>(E) * sizeof(T));
  }
}

template <class T>
void MeanMix<T>::backward(const T* dy, T* dx, bool accumulate) {
  const std::int64_t E = proj_.in_features(), B = B_, L = L_;
  Tensor dsum(detail::dtype_of<T>(), {std::max<std::int64_t>(B * E, 1)}),
      dm(detail::dtype_of<T>(), {std::max<std::int64_t>(B * E, 1)});
  T *s = dsum.ptr<T>(), *d = dm.ptr<T>();
  for (std::int64_t i = 0; i < B * E; ++i) s[i] = T(0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t l = 0; l < L; ++l)
      for (std::int64_t e = 0; e < E; ++e) s[b * E + e] += dy[(b * L + l) * E + e];
  proj_.backward(mean_.ptr<T>(), E, s, E, B, d, E);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t n = lengths_[static_cast<std::size_t>(b)];
    const T inv = n > 0 ? T(1) / static_cast<T>(n) : T(0);
    for (std::int64_t l = 0; l < L; ++l)
      for (std::int64_t e = 0; e < E; ++e) {
        const T v = l < n ? d[b * E + e] * inv : T(0);
        T& o = dx[(b * L + l) * E + e];
        o = accumulate ? o + v : v;
      }
  }
}

template class MeanMix<float>;
template class MeanMix<double>;

}  // namespace attn::nn
