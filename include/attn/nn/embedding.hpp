#pragma once
/// nn::Embedding (docs/nn.md): y[m] = W[ids[m]], W [num_embeddings, dim], the lookup of token,
/// learned-position and token-type embeddings (a position embedding is an Embedding indexed by
/// positions). Backward scatters: dW[ids[m]] += dy[m], rows in order (deterministic). Weights
/// N(0, 1) from `seed`, as torch initialises nn.Embedding. Parameter: "weight".

#include <cstdint>
#include <vector>

#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

template <class T>
class Embedding : public Module {
 public:
  /// Throws attn::Error for num_embeddings or dim < 1.
  Embedding(std::int64_t num_embeddings, std::int64_t dim, std::uint64_t seed = 0, double stddev = 1.0);
  std::int64_t num_embeddings() const { return V_; }
  std::int64_t dim() const { return E_; }

  /// y [M, dim] (row stride ldy) = W[ids] (+= when accumulate). An id outside [0, num_embeddings)
  /// is an attn::Error naming its index `name`[m]; nothing is written then.
  void forward(const std::int64_t* ids, std::int64_t M, T* y, std::int64_t ldy, bool accumulate = false,
               const char* name = "ids") const;
  /// dW[ids[m]] += dy[m] (row stride lddy).
  void backward(const std::int64_t* ids, std::int64_t M, const T* dy, std::int64_t lddy);

  std::vector<Parameter> parameters() const override;

 private:
  std::int64_t V_ = 0, E_ = 0;
  Tensor storage_;
  T *w_ = nullptr, *dw_ = nullptr;
};

extern template class Embedding<float>;
extern template class Embedding<double>;

}  // namespace attn::nn
