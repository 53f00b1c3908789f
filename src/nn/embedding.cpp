// nn::Embedding: a row gather forward and a row scatter-add backward (include/attn/nn/embedding.hpp);
// rows in parallel forward, column blocks in parallel backward (each column's rows in order, so the
// gradient's bits do not depend on the thread count).

#include "attn/nn/embedding.hpp"

#include <algorithm>
#include <cstring>

#include "attn/error.hpp"
#include "nn/gemm.hpp"
#include "nn/init.hpp"
#include "nn/params.hpp"

namespace attn::nn {
namespace {

// Enough work per parallel region to pay for waking the threads; columns per backward task.
constexpr std::int64_t kParallelElems = 1 << 15;
constexpr std::int64_t kColumnBlock = 64;

}  // namespace

template <class T>
Embedding<T>::Embedding(std::int64_t num_embeddings, std::int64_t dim, std::uint64_t seed, double stddev)
    : V_(num_embeddings), E_(dim) {
  ATTN_CHECK(V_ >= 1, value, "num_embeddings", "num_embeddings = ", V_, ", expected ≥ 1");
  ATTN_CHECK(E_ >= 1, value, "dim", "dim = ", E_, ", expected ≥ 1");
  detail::ParamBlock<T> pb({V_ * E_});
  storage_ = std::move(pb.storage);
  w_ = pb.value[0];
  dw_ = pb.grad[0];
  detail::fill_normal(w_, V_ * E_, stddev, seed);
}

template <class T>
void Embedding<T>::forward(const std::int64_t* ids, std::int64_t M, T* y, std::int64_t ldy, bool accumulate,
                           const char* name) const {
  for (std::int64_t m = 0; m < M; ++m)
    ATTN_CHECK(ids[m] >= 0 && ids[m] < V_, value, name, name, "[", m, "] = ", ids[m], ", expected 0 ≤ id < ", V_,
               " (num_embeddings)");
  const std::int64_t E = E_;
#pragma omp parallel for schedule(static) if (M * E >= kParallelElems)
  for (std::int64_t m = 0; m < M; ++m) {
    const T* w = w_ + ids[m] * E;
    T* ym = y + m * ldy;
    if (accumulate)
      for (std::int64_t c = 0; c < E; ++c) ym[c] += w[c];
    else
      std::memcpy(ym, w, static_cast<std::size_t>(E) * sizeof(T));
  }
}

template <class T>
void Embedding<T>::backward(const std::int64_t* ids, std::int64_t M, const T* dy, std::int64_t lddy) {
  // Rows may repeat ids, so rows are added in order; the columns split into blocks that threads own.
  const std::int64_t E = E_, blocks = (E + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (M * E >= kParallelElems && blocks > 1)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const std::int64_t c0 = blk * kColumnBlock, c1 = std::min(E, c0 + kColumnBlock);
    for (std::int64_t m = 0; m < M; ++m) {
      T* g = dw_ + ids[m] * E;
      const T* d = dy + m * lddy;
      for (std::int64_t c = c0; c < c1; ++c) g[c] += d[c];
    }
  }
}

template <class T>
std::vector<Parameter> Embedding<T>::parameters() const {
  const DType dt = detail::dtype_of<T>();
  return {{"weight", TensorView(w_, dt, {V_, E_}), TensorView(dw_, dt, {V_, E_})}};
}

template class Embedding<float>;
template class Embedding<double>;

}  // namespace attn::nn
