// nn::LayerNorm, nn::RMSNorm, nn::Norm (docs/nn.md): per-row statistics in fp64 (eight partial
// sums in a fixed order, row_sum), then the affine map; backward by the closed forms in
// include/attn/nn/norm.hpp. Rows are independent, so the forward and dx loops run rows in
// parallel; dγ and dβ are column sums in row order, parallel over blocks of columns (so results
// do not depend on the thread count).

#include "attn/nn/norm.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attn/error.hpp"
#include "nn/gemm.hpp"
#include "nn/params.hpp"

namespace attn::nn {
namespace {

void check_norm(std::int64_t dim, double eps) {
  ATTN_CHECK(dim >= 1, value, "dim", "dim = ", dim, ", expected ≥ 1");
  ATTN_CHECK(std::isfinite(eps) && eps > 0, value, "eps", "eps = ", eps, ", expected a finite value > 0");
}

// Enough work per parallel region to pay for waking the threads.
constexpr std::int64_t kParallelElems = 1 << 15;

// Row sums Σ_c term(c) in fp64 over kLanes interleaved partial sums (element c into partial
// c mod kLanes, the partials added pairwise at the end): independent partials, which the compiler
// turns into vector adds, in an order this code fixes, so the bits depend on neither the ISA nor
// the thread count.
constexpr int kLanes = 8;

template <class Term>
double row_sum(std::int64_t C, Term&& term) {
  double acc[kLanes] = {};
  std::int64_t c = 0;
  for (; c + kLanes <= C; c += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += term(c + l);
  for (int l = 0; c < C; ++c, ++l) acc[l] += term(c);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// Columns per task of the parameter-gradient column sums: each task owns its columns and adds
// the rows in order, so the sums are the serial loop's bits on any number of threads.
constexpr std::int64_t kColumnBlock = 64;

// Runs cols(c0, c1) over blocks of columns of [0, C), in parallel when M·C is large enough.
template <class Cols>
void column_blocks(std::int64_t M, std::int64_t C, Cols&& cols) {
  const std::int64_t blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (M * C >= kParallelElems && blocks > 1)
  for (std::int64_t blk = 0; blk < blocks; ++blk) cols(blk * kColumnBlock, std::min(C, (blk + 1) * kColumnBlock));
}

}  // namespace

template <class T>
LayerNorm<T>::LayerNorm(std::int64_t dim, double eps, bool bias) : C_(dim), eps_(eps) {
  check_norm(dim, eps);
  detail::ParamBlock<T> pb({dim, bias ? dim : 0});
  storage_ = std::move(pb.storage);
  w_ = pb.value[0];
  dw_ = pb.grad[0];
  if (bias) {
    b_ = pb.value[1];
    db_ = pb.grad[1];
  }
  for (std::int64_t c = 0; c < C_; ++c) w_[c] = T(1);
}

template <class T>
void LayerNorm<T>::forward(const T* x, std::int64_t M, T* y) {
  mean_.resize(static_cast<std::size_t>(M));
  rstd_.resize(static_cast<std::size_t>(M));
  const std::int64_t C = C_;
#pragma omp parallel for schedule(static) if (M * C >= kParallelElems)
  for (std::int64_t m = 0; m < M; ++m) {
    const T* xm = x + m * C;
    const double mean = row_sum(C, [&](std::int64_t c) { return static_cast<double>(xm[c]); }) / static_cast<double>(C);
    const double v = row_sum(C, [&](std::int64_t c) {
      const double d = static_cast<double>(xm[c]) - mean;
      return d * d;
    });
    const double rstd = 1.0 / std::sqrt(v / static_cast<double>(C) + eps_);
    mean_[static_cast<std::size_t>(m)] = mean;
    rstd_[static_cast<std::size_t>(m)] = rstd;
    T* ym = y + m * C;  // x − mean in fp64: a rounded mean would cost the digits of a large offset
    for (std::int64_t c = 0; c < C; ++c)
      ym[c] = static_cast<T>((static_cast<double>(xm[c]) - mean) * rstd) * w_[c] + (b_ ? b_[c] : T(0));
  }
}

template <class T>
void LayerNorm<T>::backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate) {
  ATTN_CHECK(static_cast<std::int64_t>(rstd_.size()) == M, shape, "M", "backward over ", M,
             " rows, but the last forward had ", rstd_.size());
  const std::int64_t C = C_;
  column_blocks(M, C, [&](std::int64_t c0, std::int64_t c1) {  // dγ, dβ: column sums in row order
    for (std::int64_t m = 0; m < M; ++m) {
      const double mean = mean_[static_cast<std::size_t>(m)], rstd = rstd_[static_cast<std::size_t>(m)];
      const T *xm = x + m * C, *dym = dy + m * C;
      for (std::int64_t c = c0; c < c1; ++c)
        dw_[c] += dym[c] * static_cast<T>((static_cast<double>(xm[c]) - mean) * rstd);
      if (db_)
        for (std::int64_t c = c0; c < c1; ++c) db_[c] += dym[c];
    }
  });
  if (!dx) return;
#pragma omp parallel for schedule(static) if (M * C >= kParallelElems)
  for (std::int64_t m = 0; m < M; ++m) {
    const double mean = mean_[static_cast<std::size_t>(m)], rstd = rstd_[static_cast<std::size_t>(m)];
    const T *xm = x + m * C, *dym = dy + m * C;
    // Σ g and Σ g·x̂ with g = dy·γ
    const double sg = row_sum(C, [&](std::int64_t c) { return static_cast<double>(dym[c]) * static_cast<double>(w_[c]); });
    const double sgx = row_sum(C, [&](std::int64_t c) {
      return static_cast<double>(dym[c]) * static_cast<double>(w_[c]) * ((static_cast<double>(xm[c]) - mean) * rstd);
    });
    const T mg = static_cast<T>(sg / static_cast<double>(C)), mgx = static_cast<T>(sgx / static_cast<double>(C));
    const T tr = static_cast<T>(rstd);
    T* dxm = dx + m * C;
    for (std::int64_t c = 0; c < C; ++c) {
      const T xhat = static_cast<T>((static_cast<double>(xm[c]) - mean) * rstd);
      const T v = tr * (dym[c] * w_[c] - mg - xhat * mgx);
      dxm[c] = accumulate ? dxm[c] + v : v;
    }
  }
}

template <class T>
std::vector<Parameter> LayerNorm<T>::parameters() const {
  const DType dt = detail::dtype_of<T>();
  std::vector<Parameter> p{{"weight", TensorView(w_, dt, {C_}), TensorView(dw_, dt, {C_})}};
  if (b_) p.push_back({"bias", TensorView(b_, dt, {C_}), TensorView(db_, dt, {C_})});
  return p;
}

template <class T>
RMSNorm<T>::RMSNorm(std::int64_t dim, double eps) : C_(dim), eps_(eps) {
  check_norm(dim, eps);
  detail::ParamBlock<T> pb({dim});
  storage_ = std::move(pb.storage);
  w_ = pb.value[0];
  dw_ = pb.grad[0];
  for (std::int64_t c = 0; c < C_; ++c) w_[c] = T(1);
}

template <class T>
void RMSNorm<T>::forward(const T* x, std::int64_t M, T* y) {
  rstd_.resize(static_cast<std::size_t>(M));
  const std::int64_t C = C_;
#pragma omp parallel for schedule(static) if (M * C >= kParallelElems)
  for (std::int64_t m = 0; m < M; ++m) {
    const T* xm = x + m * C;
    const double s = row_sum(C, [&](std::int64_t c) { return static_cast<double>(xm[c]) * static_cast<double>(xm[c]); });
    const double rstd = 1.0 / std::sqrt(s / static_cast<double>(C) + eps_);
    rstd_[static_cast<std::size_t>(m)] = rstd;
    const T tr = static_cast<T>(rstd);
    T* ym = y + m * C;
    for (std::int64_t c = 0; c < C; ++c) ym[c] = xm[c] * tr * w_[c];
  }
}

template <class T>
void RMSNorm<T>::backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate) {
  ATTN_CHECK(static_cast<std::int64_t>(rstd_.size()) == M, shape, "M", "backward over ", M,
             " rows, but the last forward had ", rstd_.size());
  const std::int64_t C = C_;
  column_blocks(M, C, [&](std::int64_t c0, std::int64_t c1) {  // dγ: column sums in row order
    for (std::int64_t m = 0; m < M; ++m) {
      const T tr = static_cast<T>(rstd_[static_cast<std::size_t>(m)]);
      const T *xm = x + m * C, *dym = dy + m * C;
      for (std::int64_t c = c0; c < c1; ++c) dw_[c] += dym[c] * xm[c] * tr;
    }
  });
  if (!dx) return;
#pragma omp parallel for schedule(static) if (M * C >= kParallelElems)
  for (std::int64_t m = 0; m < M; ++m) {
    const double rstd = rstd_[static_cast<std::size_t>(m)];
    const T *xm = x + m * C, *dym = dy + m * C;
    const double sgx = row_sum(C, [&](std::int64_t c) {
      return static_cast<double>(dym[c]) * static_cast<double>(w_[c]) * static_cast<double>(xm[c]) * rstd;
    });
    const T mgx = static_cast<T>(sgx / static_cast<double>(C)), tr = static_cast<T>(rstd);
    T* dxm = dx + m * C;
    for (std::int64_t c = 0; c < C; ++c) {
      const T v = tr * (dym[c] * w_[c] - xm[c] * tr * mgx);
      dxm[c] = accumulate ? dxm[c] + v : v;
    }
  }
}

template <class T>
std::vector<Parameter> RMSNorm<T>::parameters() const {
  const DType dt = detail::dtype_of<T>();
  return {{"weight", TensorView(w_, dt, {C_}), TensorView(dw_, dt, {C_})}};
}

const char* norm_kind_name(NormKind kind) { return kind == NormKind::layer_norm ? "layer_norm" : "rms_norm"; }

template <class T>
Norm<T>::Norm(NormKind kind, std::int64_t dim, double eps, bool bias) : kind_(kind) {
  if (kind == NormKind::layer_norm)
    ln_.emplace_back(dim, eps, bias);
  else
    rms_.emplace_back(dim, eps);
}

template <class T>
void Norm<T>::forward(const T* x, std::int64_t M, T* y) {
  if (kind_ == NormKind::layer_norm)
    ln_[0].forward(x, M, y);
  else
    rms_[0].forward(x, M, y);
}

template <class T>
void Norm<T>::backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate) {
  if (kind_ == NormKind::layer_norm)
    ln_[0].backward(x, dy, M, dx, accumulate);
  else
    rms_[0].backward(x, dy, M, dx, accumulate);
}

template <class T>
std::vector<Parameter> Norm<T>::parameters() const {
  return kind_ == NormKind::layer_norm ? ln_[0].parameters() : rms_[0].parameters();
}

template class LayerNorm<float>;
template class LayerNorm<double>;
template class RMSNorm<float>;
template class RMSNorm<double>;
template class Norm<float>;
template class Norm<double>;

}  // namespace attn::nn
